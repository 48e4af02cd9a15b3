// Interop check: a client no one at mcpca wrote (the official TypeScript MCP
// SDK) connects to cmd/mcpca-example with an mcpca-issued client certificate
// over Streamable HTTP and mutual TLS, lists the tools and calls them.
//
//   MCP_URL=https://127.0.0.1:8443/mcp CERT=reader.crt KEY=reader.key CA=root_ca.crt \
//   EXPECT_TOOLS=get_weather,search_docs,whoami DENIED_TOOL=delete_record node interop.mjs
//
// Node's TLS options (cert, key, ca) go to an undici Agent, and the SDK's
// transport is given a fetch that uses it. Exit 0 when everything is as
// expected; every check prints one line.
import { readFileSync } from "node:fs";
import { Agent, fetch as undiciFetch } from "undici";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`interop: set ${name}`);
    process.exit(2);
  }
  return v;
};

const agent = new Agent({
  connect: {
    cert: readFileSync(env("CERT")),
    key: readFileSync(env("KEY")),
    ca: readFileSync(env("CA")),
  },
});
const tlsFetch = (url, init) => undiciFetch(url, { ...init, dispatcher: agent });

const fail = (msg) => {
  console.error(`FAIL ${msg}`);
  process.exitCode = 1;
};

const client = new Client({ name: "mcpca-interop-node", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(env("MCP_URL")), { fetch: tlsFetch });
await client.connect(transport);
console.log(`ok connected: server ${client.getServerVersion()?.name}, protocol session ${transport.sessionId ?? "(none)"}`);

const { tools } = await client.listTools();
const names = tools.map((t) => t.name).sort();
const want = env("EXPECT_TOOLS").split(",").sort();
if (JSON.stringify(names) === JSON.stringify(want)) {
  console.log(`ok tools/list: ${names.join(", ")}`);
} else {
  fail(`tools/list: got ${names.join(", ")}, want ${want.join(", ")}`);
}

const res = await client.callTool({ name: "search_docs", arguments: { query: "certificates" } });
const text = res.content?.map((c) => c.text).join(" ") ?? "";
if (!res.isError && text.includes("mention")) {
  console.log(`ok tools/call search_docs: ${text}`);
} else {
  fail(`tools/call search_docs: ${JSON.stringify(res)}`);
}

const who = await client.callTool({ name: "whoami", arguments: {} });
console.log(`ok tools/call whoami: ${who.content?.map((c) => c.text).join(" ")}`);

for (const tool of [env("DENIED_TOOL"), "no_such_tool"]) {
  try {
    const r = await client.callTool({ name: tool, arguments: { id: "1" } });
    fail(`tools/call ${tool}: allowed: ${JSON.stringify(r)}`);
  } catch (err) {
    if (String(err.message).includes("permission denied") && err.code === -32010) {
      console.log(`ok tools/call ${tool}: denied (${err.code} ${err.message})`);
    } else {
      fail(`tools/call ${tool}: unexpected error ${err.code} ${err.message}`);
    }
  }
}

await client.close();
await agent.close();
