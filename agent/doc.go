// Package agent keeps mcpca certificates fresh in process: a Source that Go
// servers and clients plug into tls.Config (directly, or through
// identity.ServerTLSConfig / ClientTLSConfig and trust.RootsSource), and
// the pieces the `mcpca agent` daemon (package agent/daemon) builds on: a
// FileSink that writes chain, key and bundle atomically, reload Hooks, and
// CAClient, which speaks the CA's HTTP API.
//
// A Source holds the current certificate, key and trust bundle as one
// immutable Snapshot swapped whole through an atomic pointer, so a TLS
// handshake never sees a certificate paired with the wrong key. Its Run loop
// renews at a configurable point of the lifetime (2/3 by default, minus a
// little jitter), backs off exponentially (capped) on failure while the
// current certificate keeps being served, refreshes the trust bundle so a
// root rotation reaches it, and never renews in a loop: a renewal that does
// not yield a longer-lived certificate is retried with backoff, like a
// failure. Every decision is a pure function of the time and the
// certificate, and time comes from an injectable clock.
//
// The package speaks step-ca's HTTP API through internal/caclient and never
// imports the CA nor step-ca: it links about 200 packages, nearly all of
// the standard library.
package agent
