// Package agent keeps mcpca certificates fresh: an in-process Source that Go
// servers and clients plug into tls.Config, and the pieces of the `mcpca
// agent` daemon built on it (file sink, reload hooks, health and metrics,
// token enrolment, a multi-identity Daemon).
//
// A Source holds the current certificate, key and trust bundle as one
// immutable Snapshot swapped whole through an atomic pointer, so a TLS
// handshake never sees a certificate paired with the wrong key. Its Run loop
// renews at a configurable point of the lifetime (2/3 by default, minus a
// little jitter), backs off exponentially on failure while the current
// certificate keeps being served, and never renews in a loop: a renewal that
// does not move the next renewal point into the future is treated like a
// failure. Every decision is a pure function of the time and the certificate,
// and time comes from an injectable clock (internal/clock).
//
// The package speaks step-ca's HTTP API itself (Client: sign, renew, rekey,
// roots) and never imports the CA, so what servers link in stays small.
package agent
