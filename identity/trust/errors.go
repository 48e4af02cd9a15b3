// Package trust holds what an mcpca peer trusts: trust bundles (the CA
// roots, and intermediates to complete chains), CRLs, and the sources that
// keep them fresh (static, a file, the CA's /roots and /crl, an agent's
// roots), on one refresh loop; and the file-watching certificate source of
// a server fed by `mcpca agent`. The verifier (package identity) reads its
// bundles and CRLs; this package imports nothing of identity.
package trust

import "fmt"

const prefix = "trust: "

// errorf formats an error carrying the package prefix: every error returned
// by this package starts with "trust: ".
func errorf(format string, args ...any) error {
	return fmt.Errorf(prefix+format, args...)
}

// unprefix lets an error of this package be wrapped again by this package
// without repeating "trust: ".
func unprefix(err error) error { return prefixless{err} }

type prefixless struct{ err error }

func (p prefixless) Error() string {
	s := p.err.Error()
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):]
	}
	return s
}

func (p prefixless) Unwrap() error { return p.err }

func quote(s string) string { return fmt.Sprintf("%q", truncate(s)) }

// truncate shortens untrusted text quoted in a message.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
