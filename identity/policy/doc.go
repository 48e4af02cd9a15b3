// Package policy authorizes MCP requests against Cedar policies
// (github.com/cedar-policy/cedar-go), with the mcpca entity model, load-time
// validation, an index that answers a decision without scanning every policy,
// hot reload that keeps the last good policy set, and list filtering.
//
// A server builds one [Principal] per connection from the verified peer's
// identity.Identity, and asks [Live.Authorize] (or [Set.Authorize])
// about every JSON-RPC request; list results go through [Set.Filter] and its
// FilterTools, FilterResources and FilterPrompts shorthands, which make the
// same decisions. [AuditRecord] turns a decision into an audit.Record.
//
// # Entity model
//
// Every request is a Cedar request (principal, action, resource, context):
//
//   - principal: the peer's identity. A client-kind peer is
//     Mcp::Client::"spiffe://<td>/client/<name>", a server-kind peer (for
//     example a gateway, or a server calling back) is
//     Mcp::Server::"spiffe://<td>/server/<name>". The principal is a member
//     of Mcp::Role::"<role>" for each role its certificate carries and of
//     Mcp::TrustDomain::"<td>". Its attributes: id (the SPIFFE ID),
//     trust_domain, kind ("client" or "server"), name, serial (lower-case
//     hex), fingerprint (SHA-256 hex), roles (a Set of String), not_before
//     and not_after (datetime), and attrs, a Record of the certificate's
//     key/value attributes (`principal.attrs has team &&
//     principal.attrs.team == "payments"`).
//   - action: Mcp::Action::"<JSON-RPC method>", one of [Actions]: tools/call,
//     tools/list, resources/read, resources/list, resources/templates/list,
//     resources/subscribe, resources/unsubscribe, prompts/get, prompts/list,
//     completion/complete, logging/setLevel, sampling/createMessage,
//     elicitation/create, roots/list, tasks/get, tasks/list, tasks/result,
//     tasks/cancel.
//   - resource: Mcp::Tool::"<name>" for tools/call (attribute name),
//     Mcp::Resource::"<uri>" for resources/read, resources/subscribe and
//     resources/unsubscribe (attribute uri), Mcp::Prompt::"<name>" for
//     prompts/get (attribute name); completion/complete names a prompt or a
//     resource template through Request.TargetType. Methods without a target
//     (tools/list, logging/setLevel, ...) act on Mcp::Server::"self".
//   - context: now (datetime: the request time, to the second); hour (0-23),
//     minute (0-59) and weekday (0 = Sunday ... 6 = Saturday) as Longs in
//     the zone of [WithTimeZone] (UTC by default); source_address (ipaddr,
//     ip("0.0.0.0") when unknown, so a forbid on it fails closed); auth (a
//     String: how the caller authenticated, one of the [AuthMethod]s "mtls",
//     "token", "bound-token", "api-key"; see [NewPrincipalFor]); and args,
//     a Record of the tool call's arguments, only with [WithToolArguments].
//
// initialize, ping and notifications/* are always allowed and cannot be
// named in a policy; every other method is denied unless a policy permits it
// and none forbids it.
//
// # Validation
//
// [Compile], [Load] and [New] reject, with a [LoadError] located at
// file:line:column: syntax errors; entity types outside the model; actions
// outside [Actions]; scopes that can never match (a role as `principal ==`, a
// tool as principal, a client UID with a server SPIFFE ID); attributes the
// model does not have (principal.team, context.time, resource.uri of a tool);
// context.args without [WithToolArguments]; entity tags; duplicate or empty
// @id annotations.
//
// # Policy IDs
//
// A policy's ID is its @id("...") annotation when present, otherwise
// "<file>:<line>" of its first token (with ":<column>" added when several
// policies start on one line). Decisions, audit records and
// `mcpca policy explain` name policies by these IDs.
package policy
