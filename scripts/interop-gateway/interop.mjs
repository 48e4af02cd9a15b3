// Interop check of mcpca-gateway with parties no one at mcpca wrote: the
// official TypeScript MCP SDK as the client, and the MCP project's
// reference server (@modelcontextprotocol/server-everything, Streamable
// HTTP) as the upstream, the gateway between them over mutual TLS.
//
//   MCP_URL=https://127.0.0.1:8443/mcp CA=root.crt \
//   ALICE_CERT=alice.crt ALICE_KEY=alice.key BOB_CERT=bob.crt BOB_KEY=bob.key \
//   READER_TOOLS=echo,get-sum,... ENV_TOOL=get-env ENV_MARKER=NAME=VALUE \
//   [EXAMPLE_URL=https://127.0.0.1:8444/mcp] node interop.mjs
//
// alice has the role reader, bob admin. EXAMPLE_URL, when set, is a second
// gateway in front of cmd/mcpca-example (over mTLS to it as well). Exit 0
// when everything is as expected; every check prints one line, "ok ..." or
// "FAIL ...".
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { Agent, fetch as undiciFetch } from "undici";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`interop: set ${name}`);
    process.exit(2);
  }
  return v;
};

const fail = (msg) => {
  console.log(`FAIL ${msg}`);
  process.exitCode = 1;
};
const ok = (msg) => console.log(`ok ${msg}`);
const check = (cond, good, bad) => (cond ? ok(good) : fail(bad));

const agentOf = (who) =>
  new Agent({
    connect: {
      cert: readFileSync(env(`${who}_CERT`)),
      key: readFileSync(env(`${who}_KEY`)),
      ca: readFileSync(env("CA")),
    },
  });
const agents = { alice: agentOf("ALICE"), bob: agentOf("BOB") };
const fetchOf = (who) => (url, init) => undiciFetch(url, { ...init, dispatcher: agents[who] });

// waiter is a value some handler will hand to resolve; wait() returns it,
// or fails after ms.
const waiter = (what, ms = 15000) => {
  let resolve;
  const p = new Promise((res) => (resolve = res));
  const wait = () =>
    Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms).unref())]);
  return { resolve, wait };
};

const text = (res) => res.content?.map((c) => c.text ?? "").join(" ") ?? "";

async function connect(who, url, opts = {}) {
  const client = new Client(
    { name: `mcpca-interop-gateway-${who}`, version: "1.0.0" },
    { capabilities: opts.capabilities ?? {} },
  );
  opts.setup?.(client);
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: fetchOf(who) });
  await client.connect(transport);
  return { client, transport };
}

async function denied(label, fn) {
  try {
    const r = await fn();
    fail(`${label}: allowed: ${JSON.stringify(r).slice(0, 300)}`);
  } catch (err) {
    check(
      err.code === -32010 && err.message === "MCP error -32010: permission denied",
      `${label}: denied (${err.code} ${err.message})`,
      `${label}: unexpected error ${err.code} ${err.message}`,
    );
  }
}

// rawPost sends one JSON-RPC request as who, outside the SDK, and returns
// the HTTP status and the body.
async function rawPost(who, url, sessionId, protocolVersion, msg) {
  const res = await fetchOf(who)(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-session-id": sessionId,
      "mcp-protocol-version": protocolVersion,
    },
    body: JSON.stringify(msg),
  });
  return { status: res.status, body: await res.text() };
}

const url = env("MCP_URL");

// alice, a reader, with every client capability the server exercises.
const roots = [{ uri: "file:///work/mcpca-interop", name: "interop root" }];
const sampled = waiter("sampling/createMessage");
const elicited = waiter("elicitation/create");
const rootsAsked = waiter("roots/list");
const listChanged = waiter("notifications/resources/list_changed");
const updated = waiter("notifications/resources/updated");
const alice = await connect("alice", url, {
  capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } },
  setup: (c) => {
    c.setRequestHandler(CreateMessageRequestSchema, async (req) => {
      sampled.resolve(req.params);
      const asked = req.params.messages?.[0]?.content?.text ?? "";
      return { model: "mcpca-interop-model", role: "assistant", stopReason: "endTurn",
        content: { type: "text", text: `sampled through the gateway: ${asked}` } };
    });
    c.setRequestHandler(ElicitRequestSchema, async (req) => {
      elicited.resolve(req.params);
      return { action: "accept", content: { name: "Alice Example", check: true, email: "alice@acme.test", integer: 7 } };
    });
    c.setRequestHandler(ListRootsRequestSchema, async () => {
      rootsAsked.resolve();
      return { roots };
    });
    c.setNotificationHandler(ResourceListChangedNotificationSchema, (n) => listChanged.resolve(n));
    c.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => updated.resolve(n.params));
  },
});
const aliceSession = alice.transport.sessionId;
ok(`connected as alice: server ${alice.client.getServerVersion()?.name} ${alice.client.getServerVersion()?.version}, ` +
  `protocol ${alice.transport.protocolVersion}, session ${aliceSession ? "set" : "(none)"}`);
const bob = await connect("bob", url);
ok(`connected as bob: server ${bob.client.getServerVersion()?.name}`);

// Lists: filtered by the policy, per caller.
const envTool = env("ENV_TOOL");
const readerTools = (await alice.client.listTools()).tools.map((t) => t.name).sort();
const wantReader = env("READER_TOOLS").split(",").sort();
check(JSON.stringify(readerTools) === JSON.stringify(wantReader),
  `tools/list as alice (reader): ${readerTools.join(", ")}`,
  `tools/list as alice: got ${readerTools.join(", ")}, want ${wantReader.join(", ")}`);
const adminTools = (await bob.client.listTools()).tools.map((t) => t.name).sort();
check(adminTools.includes(envTool) && !readerTools.includes(envTool) && adminTools.length > readerTools.length,
  `tools/list as bob (admin): ${adminTools.length} tools, ${envTool} among them`,
  `tools/list as bob: ${adminTools.join(", ")}`);

// Calls.
const echo = await alice.client.callTool({ name: "echo", arguments: { message: "hello through the gateway" } });
check(text(echo) === "Echo: hello through the gateway", `tools/call echo: ${text(echo)}`, `tools/call echo: ${JSON.stringify(echo)}`);
const sum = await alice.client.callTool({ name: "get-sum", arguments: { a: 2, b: 3 } });
check(text(sum) === "The sum of 2 and 3 is 5.", `tools/call get-sum: ${text(sum)}`, `tools/call get-sum: ${JSON.stringify(sum)}`);
await denied(`tools/call ${envTool} as alice`, () => alice.client.callTool({ name: envTool, arguments: {} }));
await denied("tools/call no-such-tool as alice", () => alice.client.callTool({ name: "no-such-tool", arguments: {} }));
const envRes = await bob.client.callTool({ name: envTool, arguments: {} });
const marker = env("ENV_MARKER");
const [mk, mv] = marker.split("=");
check(JSON.parse(text(envRes))[mk] === mv, `tools/call ${envTool} as bob: the server's environment, ${marker} in it`,
  `tools/call ${envTool} as bob: ${text(envRes).slice(0, 300)}`);

// Sampling: the server's tool asks the client (on the tool call's stream),
// the client's answer goes back through the gateway, the tool returns it.
const samp = await alice.client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "ping", maxTokens: 20 } });
const asked = await sampled.wait();
check(asked.messages?.[0]?.content?.text === "Resource trigger-sampling-request context: ping" &&
    text(samp).includes('"model": "mcpca-interop-model"') &&
    text(samp).includes("sampled through the gateway: Resource trigger-sampling-request context: ping"),
  `sampling round trip: the server asked "${asked.messages?.[0]?.content?.text}", the tool returned the client's answer (model mcpca-interop-model)`,
  `sampling round trip: asked ${JSON.stringify(asked)}, tool returned ${text(samp)}`);

// Elicitation, the same way.
const eli = await alice.client.callTool({ name: "trigger-elicitation-request", arguments: {} });
const form = await elicited.wait();
check(form.message === "Please provide inputs for the following fields:" &&
    text(eli).includes("✅ User provided the requested information!") && text(eli).includes("- Name: Alice Example") &&
    text(eli).includes("- Email: alice@acme.test"),
  `elicitation round trip: the server asked "${form.message}", the tool returned "- Name: Alice Example"`,
  `elicitation round trip: ${text(eli)}`);

// Roots: the server asks on the standalone stream (GET), the answer goes
// back through the gateway.
const rl = await alice.client.callTool({ name: "get-roots-list", arguments: {} });
await rootsAsked.wait();
check(text(rl).includes("Current MCP Roots (1 total)") && text(rl).includes("URI: file:///work/mcpca-interop"),
  "roots round trip: the server asked roots/list on the standalone stream, the tool returned file:///work/mcpca-interop",
  `roots round trip: ${text(rl)}`);

// Resources: the list is filtered; a read allowed, one denied.
const resList = (await alice.client.listResources()).resources.map((r) => r.uri);
check(resList.length > 0 && resList.every((u) => u.startsWith("demo://resource/static/")),
  `resources/list as alice: ${resList.length} resources, all demo://resource/static/*`,
  `resources/list as alice: ${resList.join(", ")}`);
const doc = "demo://resource/static/document/architecture.md";
const read = await alice.client.readResource({ uri: doc });
check(read.contents?.[0]?.uri === doc && read.contents[0].text?.length > 0,
  `resources/read ${doc}: ${read.contents[0].text.length} characters`, `resources/read ${doc}: ${JSON.stringify(read).slice(0, 300)}`);
await denied("resources/read demo://resource/dynamic/blob/1 as alice", () => alice.client.readResource({ uri: "demo://resource/dynamic/blob/1" }));

// A resource added by a tool: notifications/resources/list_changed reaches
// the client on the standalone stream, and the new resource is listed and
// read.
const payload = "mcpca gateway interop\n";
const gz = await alice.client.callTool({ name: "gzip-file-as-resource",
  arguments: { name: "interop.txt.gz", data: "data:text/plain;base64," + Buffer.from(payload).toString("base64") } });
const added = "demo://resource/session/interop.txt.gz";
check(gz.content?.[0]?.type === "resource_link" && gz.content[0].uri === added,
  `tools/call gzip-file-as-resource: a link to ${added}`, `tools/call gzip-file-as-resource: ${JSON.stringify(gz).slice(0, 300)}`);
const lc = await listChanged.wait();
ok(`notification ${lc.method} reached the client`);
const resList2 = (await alice.client.listResources()).resources.map((r) => r.uri);
const blob = (await alice.client.readResource({ uri: added })).contents?.[0]?.blob;
check(resList2.includes(added) && blob && gunzipSync(Buffer.from(blob, "base64")).toString() === payload,
  `resources/list then lists ${added}; read and gunzipped it is the data sent`,
  `after list_changed: ${resList2.join(", ")}; blob ${blob}`);

// Subscriptions: subscribe, have the server send updates, get one.
await alice.client.subscribeResource({ uri: doc });
const tog = await alice.client.callTool({ name: "toggle-subscriber-updates", arguments: {} });
const upd = await updated.wait();
check(upd.uri === doc && text(tog).startsWith("Started simulated resource updated notifications"),
  `notifications/resources/updated for ${upd.uri} reached the client`, `resources/updated: ${JSON.stringify(upd)} ${text(tog)}`);
await alice.client.callTool({ name: "toggle-subscriber-updates", arguments: {} });
await alice.client.unsubscribeResource({ uri: doc });

// Sessions: bob naming alice's session is refused by the gateway.
const pv = alice.transport.protocolVersion;
const theft = await rawPost("bob", url, aliceSession, pv, { jsonrpc: "2.0", id: 1, method: "tools/list", params: {} });
let theftBody = {};
try {
  theftBody = JSON.parse(theft.body);
} catch {}
check(theft.status === 403 && theftBody.error === "session belongs to another identity",
  `bob with alice's Mcp-Session-Id: ${theft.status} ${theftBody.error}`, `bob with alice's session: ${theft.status} ${theft.body}`);
// ...while alice's own raw request in it is answered.
const own = await rawPost("alice", url, aliceSession, pv, { jsonrpc: "2.0", id: 2, method: "ping" });
check(own.status === 200, `alice's own raw ping in her session: ${own.status}`, `alice's raw ping: ${own.status} ${own.body}`);

// Ending the session (DELETE) ends its binding at the gateway too.
await alice.transport.terminateSession();
const after = await rawPost("alice", url, aliceSession, pv, { jsonrpc: "2.0", id: 3, method: "ping" });
check(after.status === 404, `alice's session after DELETE: ${after.status} ${after.body.trim()}`,
  `alice's session after DELETE: ${after.status} ${after.body}`);
await alice.client.close();
await bob.client.close();

// cmd/mcpca-example behind a second gateway, reached over mTLS.
const exURL = process.env.EXAMPLE_URL;
if (exURL) {
  const a = await connect("alice", exURL);
  const b = await connect("bob", exURL);
  ok(`example: connected as alice: server ${a.client.getServerVersion()?.name}`);
  const names = (await a.client.listTools()).tools.map((t) => t.name).sort().join(", ");
  check(names === "get_weather, search_docs, whoami", `example: tools/list as alice: ${names}`, `example: tools/list as alice: ${names}`);
  const who = text(await a.client.callTool({ name: "whoami", arguments: {} }));
  check(who === env("EXAMPLE_WHOAMI"), `example: tools/call whoami as alice: the example sees ${who}`,
    `example: whoami: got ${who}, want ${env("EXAMPLE_WHOAMI")}`);
  const docs = text(await a.client.callTool({ name: "search_docs", arguments: { query: "certificates" } }));
  check(docs.includes("mention"), `example: tools/call search_docs: ${docs}`, `example: search_docs: ${docs}`);
  await denied("example: tools/call delete_record as alice", () => a.client.callTool({ name: "delete_record", arguments: { id: "7" } }));
  const del = text(await b.client.callTool({ name: "delete_record", arguments: { id: "7" } }));
  check(del === "record 7 deleted", `example: tools/call delete_record as bob: ${del}`, `example: delete_record as bob: ${del}`);
  await a.client.close();
  await b.client.close();
}

await agents.alice.close();
await agents.bob.close();
