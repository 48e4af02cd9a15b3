// Runs the reference MCP server of the MCP project (npm
// @modelcontextprotocol/server-everything) in its Streamable HTTP mode,
// as `node dist/index.js streamableHttp` does, with two changes that do
// not touch MCP: it listens on loopback only (the package listens on every
// interface), and on the port PORT names, 0 (the default here) meaning any
// free one. Once listening it prints {"listening":PORT} on stderr.
//
//   PORT=0 node everything.mjs     # MCP at http://127.0.0.1:PORT/mcp
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if ((typeof args[0] === "number" || typeof args[0] === "string") && typeof args[1] !== "string") {
    args.splice(1, 0, "127.0.0.1");
  }
  this.once("listening", () => console.error(JSON.stringify({ listening: this.address().port })));
  return listen.apply(this, args);
};
process.env.PORT ??= "0";
await import("./node_modules/@modelcontextprotocol/server-everything/dist/transports/streamableHttp.js");
