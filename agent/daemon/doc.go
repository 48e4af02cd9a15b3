// Package daemon is the `mcpca agent` daemon: it keeps the certificates of
// several identities fresh on disk from a YAML configuration (Config), with
// first enrolment from a token file, atomic file writes and reload hooks
// (from package agent), a loopback /healthz and Prometheus /metrics, and
// configuration reloads.
//
// It lives apart from package agent so that Go servers embedding an
// agent.Source do not link the YAML and Prometheus libraries.
package daemon

import "fmt"

// errorf returns an error whose message starts with the agent's prefix.
func errorf(format string, args ...any) error {
	return fmt.Errorf("agent: "+format, args...)
}
