package identity

import (
	"errors"
	"fmt"
)

// errorf formats an error carrying the package prefix. Every error returned by
// this package starts with "identity: ".
func errorf(format string, args ...any) error {
	return fmt.Errorf("identity: "+format, args...)
}

// Sentinel errors that callers may branch on with errors.Is.
var (
	// ErrMalformedExtension reports roles or attributes extension bytes that
	// are not the DER encoding the identity contract specifies.
	ErrMalformedExtension = errors.New("malformed extension")
	// ErrBounds reports roles or attributes beyond the contract's bounds.
	ErrBounds = errors.New("out of bounds")
	// ErrNotSVID reports a certificate that is not a valid mcpca X509-SVID.
	ErrNotSVID = errors.New("not an mcpca X509-SVID")
)

// unprefix strips the package prefix from an error made by errorf, so that
// it can be wrapped again without repeating "identity: ".
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

const prefix = "identity: "

func quote(s string) string { return fmt.Sprintf("%q", truncate(s)) }
