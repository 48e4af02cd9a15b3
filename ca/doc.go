// Package ca is the mcpca certificate authority: step-ca's authority,
// embedded, behind mcpca's own enrolment, renewal and revocation handlers.
//
// Init creates a CA directory (Layout): a root and an intermediate (keys
// encrypted with the CA password, the root's meant to go offline), the
// step-ca configuration with the admin JWK provisioner, and mcpca's
// settings (Settings: trust domain, lifetimes, provisioner limits, the
// OIDs of the roles and attributes extensions). AddProvisioner adds a
// restricted provisioner (ProvisionerPolicy: roles, attribute keys, name
// patterns, DNS and IP limits), optionally with its own password, and
// ExportProvisioner writes the directory a delegated team mints from.
//
// MintToken (or a Minter, for many) signs a one-time enrolment token with a
// provisioner key; MintRevokeToken a revocation token for a serial or a
// whole identity.
//
// Open loads a CA directory into a Server, which serves step-ca's HTTP API
// (wire-compatible with the step CLI) over TLS: POST /1.0/sign redeems a
// token for an X509-SVID carrying the roles and attributes the token grants,
// after reading the token once, strictly, and checking it against the
// identity contract and the provisioner's limits; /renew and /rekey renew
// over mTLS (only the newest certificate of a renewal chain, while the
// issuing provisioner's limits still allow it); /revoke revokes a serial
// (and the certificates renewed from it) or a whole identity, and
// regenerates the CRL. The Server is also an OAuth authorization server for
// workloads (docs/oauth-server.md): RFC 8414 metadata, a JWKS, and a token
// endpoint granting client credentials to a client authenticated by its
// mcpca certificate (RFC 8705 tls_client_auth), whose JWT access tokens
// (RFC 9068) are bound to that certificate; and it keeps API keys (their
// hashes only, MintAPIKeyToken for the operator's requests), serving the
// keys in force as a signed key set that package identity/apikey verifies
// against. Only step-ca's read-only GET endpoints reach
// step-ca's own router. Everything is kept in mcpca's store (package
// store), durable before any answer.
//
// See SECURITY.md for who holds which secret and what the CA serves to
// anyone, and docs/cli.md for the CLI (`mcpca init`, `serve`,
// `token`, `provisioner`, `revoke`) built on this package.
package ca
