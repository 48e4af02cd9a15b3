// Package policy authorizes MCP requests against Cedar policies
// (github.com/cedar-policy/cedar-go), with the mcpca entity model, load-time
// validation, an index that answers a decision without scanning every policy,
// hot reload that keeps the last good policy set, and list filtering.
//
// # Entity model
//
// Every request is a Cedar request (principal, action, resource, context):
//
//   - principal: the peer's identity. A client-kind peer is
//     Mcp::Client::"spiffe://<td>/client/<name>", a server-kind peer (for
//     example a gateway or a server calling back) is
//     Mcp::Server::"spiffe://<td>/server/<name>". The principal is a member
//     of Mcp::Role::"<role>" for each role its certificate carries and of
//     Mcp::TrustDomain::"<td>". Its attributes are
//     id (String, the SPIFFE ID), trust_domain, kind ("client" or "server"),
//     name, serial (lower-case hex), fingerprint (SHA-256 hex), roles (Set of
//     String), not_before and not_after (datetime), and attrs (a Record of
//     the certificate's key/value attributes, so `principal.attrs.team ==
//     "payments"` and `principal.attrs has env` work).
//   - action: Mcp::Action::"<JSON-RPC method>", for example "tools/call",
//     "resources/read", "prompts/get", "tools/list" (see [Actions]). Naming an
//     action outside that list is a load error.
//   - resource: Mcp::Tool::"<name>" for tools/call (attribute name),
//     Mcp::Resource::"<uri>" for resources/read, resources/subscribe and
//     resources/unsubscribe (attribute uri), Mcp::Prompt::"<name>" for
//     prompts/get (attribute name), and Mcp::Server::"self" for methods
//     without a target (tools/list, logging/setLevel, ...).
//   - context: now (datetime, the request time to the second), hour (0-23), minute (0-59) and weekday
//     (0 = Sunday ... 6 = Saturday) as Longs in the configured time zone
//     (UTC unless [WithTimeZone]), source_address (ipaddr; ip("0.0.0.0") when
//     unknown, so a forbid on it never fails open), and args (a Record of the
//     tool call's arguments) only with [WithToolArguments].
//
// initialize, ping and notifications/* are always allowed; every other method
// is denied unless a policy permits it and none forbids it.
//
// Policy IDs are the @id("...") annotation when present, otherwise
// "<file>:<line>" of the policy's first token.
package policy
