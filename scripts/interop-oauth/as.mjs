// Two independent authorization servers (npm oidc-provider, a certified
// OpenID provider) over HTTPS on loopback, for mcpca's OAuth interop test:
//
//   - the client credentials grant, resource indicators (RFC 8707: the
//     token's audience is the resource asked for) and JWT access tokens
//     (RFC 9068, ES256);
//   - RFC 8705 mTLS: the client "alice" authenticates with her mcpca
//     certificate (tls_client_auth, its SPIFFE ID as the SAN URI) and gets
//     tokens bound to it (cnf.x5t#S256);
//   - "reader-bot" authenticates with a secret (client_secret_basic);
//   - "opaque-bot" gets opaque tokens, which the resource server
//     "mcp-server" introspects (RFC 7662).
//
// The second server ("other") is a different issuer with the same clients.
// Env: TLS_CERT, TLS_KEY (the servers' certificate, PEM), CA (the mcpca
// root that client certificates chain to). Prints one JSON line
// {"issuer": URL, "other": URL} once both listen.
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const tls = { cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY),
  ca: fs.readFileSync(process.env.CA), requestCert: true, rejectUnauthorized: false };

// Roles the provider states for each client (extraTokenClaims).
const roles = { 'reader-bot': ['reader'], 'opaque-bot': ['reader'], alice: ['reader', 'admin'] };

function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'ES256', use: 'sig' };
}

async function start() {
  let handler = (req, res) => { res.statusCode = 503; res.end(); };
  const server = https.createServer(tls, (req, res) => handler(req, res));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `https://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    jwks: { keys: [signingKey()] },
    scopes: ['openid', 'mcp'],
    clientAuthMethods: ['client_secret_basic', 'tls_client_auth'],
    clients: [
      { client_id: 'reader-bot', client_secret: 'reader-bot-secret', grant_types: ['client_credentials'],
        redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'mcp',
        id_token_signed_response_alg: 'ES256' },
      { client_id: 'opaque-bot', client_secret: 'opaque-bot-secret', grant_types: ['client_credentials'],
        redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'mcp',
        id_token_signed_response_alg: 'ES256' },
      { client_id: 'mcp-server', client_secret: 'mcp-server-secret', grant_types: [], redirect_uris: [], response_types: [],
        token_endpoint_auth_method: 'client_secret_basic', id_token_signed_response_alg: 'ES256' },
      { client_id: 'alice', grant_types: ['client_credentials'], redirect_uris: [], response_types: [],
        token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: 'spiffe://acme.test/client/alice',
        tls_client_certificate_bound_access_tokens: true, scope: 'mcp', id_token_signed_response_alg: 'ES256' },
    ],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Every https resource is one of ours, named in the token's aud.
        getResourceServerInfo: (ctx, resourceIndicator, client) => {
          if (!resourceIndicator.startsWith('https://')) throw new Error('not an https resource');
          if (client.clientId === 'opaque-bot') {
            return { scope: 'mcp', audience: resourceIndicator, accessTokenTTL: 600, accessTokenFormat: 'opaque' };
          }
          return { scope: 'mcp', audience: resourceIndicator, accessTokenTTL: 600, accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } } };
        },
        useGrantedResource: () => true,
      },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        getCertificate: (ctx) => {
          const peer = ctx.socket.getPeerCertificate?.(false);
          return peer && peer.raw ? new crypto.X509Certificate(peer.raw) : undefined;
        },
        certificateAuthorized: (ctx) => ctx.socket.authorized === true,
        certificateSubjectMatches: (ctx, property, expected) => {
          if (property !== 'tls_client_auth_san_uri') return false;
          const cert = new crypto.X509Certificate(ctx.socket.getPeerCertificate(false).raw);
          return (cert.subjectAltName || '').split(', ').includes(`URI:${expected}`);
        },
      },
    },
    extraTokenClaims: (ctx, token) => (roles[token.clientId] ? { roles: roles[token.clientId] } : undefined),
    clientBasedCORS: () => true,
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  handler = provider.callback();
  return issuer;
}

const issuer = await start();
const other = await start();
console.log(JSON.stringify({ issuer, other }));
