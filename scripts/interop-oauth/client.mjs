// The TypeScript MCP SDK's own OAuth support against mcpca: the client
// connects to MCP_URL without credentials, gets the 401 challenge, reads
// mcpca's RFC 9728 metadata from it, finds the authorization server
// (oidc-provider) and its metadata, gets a token by the client credentials
// grant (ClientCredentialsProvider, the SDK's client auth extension), with
// the resource indicator from the metadata, and calls tools with it.
// Env: MCP_URL, CLIENT_ID, CLIENT_SECRET, ISSUER; TLS trust through
// NODE_EXTRA_CA_CERTS. Prints "ok ..." lines; exits non-zero on failure.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const url = new URL(process.env.MCP_URL);

// Without credentials: the challenge names the metadata.
const bare = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }) });
console.log(`ok unauthenticated: ${bare.status} ${bare.headers.get('www-authenticate')}`);

const authProvider = new ClientCredentialsProvider({ clientId: process.env.CLIENT_ID, clientSecret: process.env.CLIENT_SECRET,
  scope: 'mcp', expectedIssuer: process.env.ISSUER });
const client = new Client({ name: 'mcpca-oauth-interop', version: '1.0.0' });
const transport = new StreamableHTTPClientTransport(url, { authProvider });
await client.connect(transport);
console.log(`ok connected: server ${client.getServerVersion()?.name}`);
const tokens = authProvider.tokens();
const claims = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url').toString());
console.log(`ok token: iss ${claims.iss} aud ${claims.aud} sub ${claims.sub} scope ${claims.scope}`);
const { tools } = await client.listTools();
console.log(`ok tools/list: ${tools.map((t) => t.name).sort().join(', ')}`);
const who = await client.callTool({ name: 'whoami', arguments: {} });
console.log(`ok tools/call whoami: ${who.content.map((c) => c.text).join(' ')}`);
try {
  await client.callTool({ name: 'delete_record', arguments: { id: '1' } });
  console.log('FAIL delete_record was allowed');
  process.exit(1);
} catch (e) {
  console.log(`ok tools/call delete_record: denied (${e.code} ${e.message})`);
}
await client.close();
