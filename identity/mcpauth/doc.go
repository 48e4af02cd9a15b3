// Package mcpauth enforces mcpca identities and Cedar policies on an MCP
// server built with github.com/modelcontextprotocol/go-sdk, served over
// Streamable HTTP with mutual TLS.
//
// Guard.Server wires a Guard in one call: it returns an http.Server with
// the Guard's middleware installed on the mcp.Server, its HTTP handler at
// the path given, mTLS with the Guard's Verifier, its connection context,
// and header and idle timeouts. Guard.MCPHandler does the first two for a
// mux of one's own. Wired by hand, a Guard cannot fail open: its Handler
// serves nothing (500) until its middleware is installed, and its
// middleware denies requests that did not pass its Handler.
//
// A Guard has two halves that work together:
//
//   - Guard.Handler wraps the SDK's StreamableHTTPHandler. It requires a
//     verified client certificate (401 or 403 with a JSON body otherwise),
//     derives the caller's Identity once per connection (wire
//     Guard.ConnContext into http.Server.ConnContext), binds every MCP
//     session (Mcp-Session-Id) to the identity that created it, and marks
//     responses private to caches.
//   - Guard.Middleware is a receiving middleware for mcp.Server. It decides
//     every request with the policy: tools/call by tool name (and, with
//     WithToolArguments, its arguments), resources/read, resources/subscribe
//     and resources/unsubscribe by URI, prompts/get by name,
//     completion/complete by the prompt or resource it completes, and every
//     other method by its name. initialize, server/discover, ping and
//     notifications are always allowed; subscriptions/listen (protocol
//     2026-07-28) too, keeping only the resources the caller may subscribe
//     to. Lists (tools/list, resources/list, resources/templates/list,
//     prompts/list) return only what the caller may use. Every decision is
//     written to the audit log.
//
// A denial is a JSON-RPC error with code CodeDenied and the message
// "permission denied", the same whether or not the tool, resource or prompt
// exists, so a caller cannot probe for names it may not use.
//
// Handlers reach the caller's identity with FromContext.
//
// Sessions are bound to the SPIFFE ID, not to one certificate, so a client
// whose certificate was renewed keeps its session. The bindings live in the
// Guard's table, bounded (WithMaxSessions) and aged (WithSessionTTL); a
// session whose binding left the table is answered 404, like a session that
// ended, for every identity, and its client starts a new one. Stateless
// servers (StreamableHTTPOptions.Stateless, or protocol 2026-07-28 clients)
// have no sessions to bind; every request is checked on its own either way.
// What they hold instead, the requestState of an input-required result, is
// sealed to the caller it was returned to (see WithStateKey): a retry from
// another identity, or with an altered state, is refused with
// CodeStateRefused before the handler runs.
//
// With WithResourceServer the Guard is also an OAuth 2.1 resource server
// (identity/oauth): a caller may present an access token instead of, or
// with, a client certificate; TLS then requests a certificate instead of
// requiring one (Guard.TLSConfig), the RFC 9728 metadata is served
// (Guard.Server), refusals carry the WWW-Authenticate challenges
// (Guard.WriteAuthError), and a token maps to the same principal a
// certificate of the same SPIFFE ID does, with context.auth saying how the
// caller authenticated. Without it the Guard does not touch the
// Authorization header: an application can check its own bearer tokens or
// API keys inside Handler, on top of mTLS.
//
// Every decision is audited before the request is handled; a request whose
// decision cannot be written is refused with CodeAuditFailed unless
// WithAuditFailOpen.
//
// The audit log gets one record per decided request: allowed or denied,
// with the determining policy IDs. A list request is one record (the
// decision on the list method itself); the per-item decisions that filter
// it are not logged one by one.
//
// Because the policy is consulted on every request, reloading it
// (policy.Live.Reload or Watch) changes decisions for live sessions
// at once, and because the peer certificate is re-verified on every request
// (a cache hit in the Verifier), a certificate that expires or is revoked
// (once the CRL source has refreshed) stops working on connections that are
// already open.
package mcpauth
