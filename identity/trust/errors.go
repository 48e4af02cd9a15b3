// Package trust holds what an mcpca peer trusts: trust bundles (the CA
// roots, and intermediates to complete chains), CRLs, and the sources that
// keep them fresh (static, a file, the CA's /roots and /crl, an agent's
// roots), on one refresh loop; and the file-watching certificate source of
// a server fed by `mcpca agent`. The verifier (package identity) reads its
// bundles and CRLs; this package imports nothing of identity.
package trust

import "fmt"

// errorf formats an error carrying the package prefix: every error returned
// by an exported function or method of this package starts with "trust: ",
// once. Only the exported boundary calls it; the unexported helpers behind
// it (parseCRL, newBundle, parseBundlePEM, ...) return errors without the
// prefix, so an exported function wrapping one adds the prefix exactly once.
func errorf(format string, args ...any) error {
	return fmt.Errorf("trust: "+format, args...)
}

func quote(s string) string { return fmt.Sprintf("%q", truncate(s)) }

// truncate shortens untrusted text quoted in a message.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
