// Package oauth makes an MCP server (or the gateway) an OAuth 2.1
// protected resource, as the MCP authorization specification asks, next to
// mutual TLS and mapped to the same Cedar principals:
//
//   - access tokens that are JWTs (RFC 9068; typ at+jwt, or JWT) of the
//     trusted issuers, verified with the issuer's keys found by RFC 8414
//     metadata (or OpenID discovery) and its jwks_uri: iss exact, aud this
//     resource (RFC 8707), exp, nbf and iat with a bounded leeway, only
//     asymmetric algorithms (never none or HS*); keys cached, fetched again
//     when too old and, at a bounded rate, when a token names a key ID they
//     lack (so rotation is followed and made-up key IDs cannot flood the
//     issuer); a verified token is cached until it expires;
//   - opaque tokens through RFC 7662 introspection (WithIntrospection), an
//     answer believed no longer than the token lives nor than a minute;
//   - certificate-bound tokens (RFC 8705): a token whose cnf.x5t#S256 is
//     set is accepted only with the client certificate it names
//     (policy.AuthBoundToken), and WithRequireBoundTokens refuses the others;
//   - other bearer credentials (API keys) through a BearerVerifier chosen by
//     the credential's prefix;
//   - the RFC 9728 metadata (MetadataHandler at MetadataPaths) and the RFC
//     6750 challenges (Challenge): 401 with resource_metadata (and
//     error="invalid_token" when a token was refused), 403 with
//     error="insufficient_scope".
//
// # One principal
//
// A token's caller becomes an identity.Identity, so that policy sees a
// Mcp::Client (or Mcp::Server) like a certificate's:
//
//   - the SPIFFE ID: sub itself when it is an mcpca SPIFFE ID
//     (spiffe://TD/client/NAME) in the issuer's trust domain
//     (Issuer.TrustDomain; a subject of another trust domain is refused, so
//     an issuer cannot speak for principals that are not its own), else
//     spiffe://TD/client/SUB when sub is a valid name ([A-Za-z0-9._-]), else
//     the token is refused;
//   - roles: the values of the claims roles, groups and scope
//     (WithRoleClaims; arrays of strings or space-separated strings) that
//     are valid role names ([a-z0-9_.-]), at most 32; others are ignored;
//   - attributes: the string values of the attrs claim with valid keys,
//     plus oauth.issuer (iss) and oauth.client_id (client_id);
//   - not_before and not_after: the token's; fingerprint: the bound
//     certificate's SHA-256, zero for an unbound token; serial: empty.
//
// The Cedar context says how the caller authenticated (context.auth:
// "mtls", "token", "bound-token" or "api-key"), so a policy can ask, say,
// for a bound token before a destructive tool.
//
// identity/mcpauth's WithResourceServer puts a Resource in a Guard.
package oauth
