// Package daemon is the `mcpca agent` daemon: it keeps the certificates of
// several identities fresh on disk from a YAML configuration (Config), with
// first enrolment from a token file, atomic file writes and reload hooks
// (from package agent), a loopback /healthz and Prometheus /metrics, and
// configuration reloads.
//
// It lives apart from package agent so that Go servers embedding an
// agent.Source do not link the YAML and Prometheus libraries.
//
// Footprint (scripts/bench-agent.sh, 2 cores): idle, the daemon does no work
// at all between renewals (one timer per identity; metrics are computed at
// scrape time) and uses no measurable CPU. A binary linking only this
// package holds 10 identities in about 16 MB RSS; inside the all-in-one
// mcpca binary, which also links step-ca, the same agent is about 35 MB,
// most of it clean pages of the 50 MB binary touched by package
// initialisation (`step ca renew --daemon` with one identity: about 37 MB).
package daemon

import "github.com/mcpca/mcpca/agent/internal/agenterr"

// errorf returns an error whose message starts with the agent's prefix once:
// an error of package agent or of this package passed as an argument loses
// its own.
func errorf(format string, args ...any) error {
	return agenterr.Errorf(format, args...)
}
