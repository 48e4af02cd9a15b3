package identity

import (
	"crypto/x509"
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

// Reason says why a Verifier (or the TLS helpers) refused a peer
// certificate; programs switch on it (VerifyError.Reason) instead of
// matching error text. Its values are stable and fit metrics labels.
type Reason string

// The reasons a peer certificate is refused.
const (
	ReasonMalformedChain    Reason = "malformed-chain"        // no certificate, a nil one, a chain too long, a bad kind asked for
	ReasonNotSVID           Reason = "not-svid"               // not an mcpca X509-SVID (ErrNotSVID)
	ReasonBadExtension      Reason = "bad-extension"          // roles/attributes malformed or out of bounds, an unknown critical extension
	ReasonTrustDomain       Reason = "untrusted-trust-domain" // a trust domain the verifier does not accept
	ReasonWeakKey           Reason = "weak-key"               // outside the key policy (ErrWeakKey)
	ReasonWrongUsage        Reason = "wrong-usage"            // a client identity as a server, a missing extended key usage
	ReasonNotYetValid       Reason = "not-yet-valid"          // before notBefore
	ReasonExpired           Reason = "expired"                // after notAfter
	ReasonUntrusted         Reason = "untrusted"              // the chain does not verify to a root of the bundle
	ReasonRevoked           Reason = "revoked"                // on a CRL
	ReasonRevocationUnknown Reason = "revocation-unknown"     // no usable CRL with fail-closed revocation
	ReasonNotAuthorized     Reason = "not-authorized"         // not an identity the connection accepts (WithServerID, an authorizer)
	ReasonWrongHost         Reason = "wrong-host"             // a server certificate that does not name the dialled host
)

// VerifyError is the error of a refused peer certificate. Its message is
// the one users read ("identity: spiffe://...: certificate expired at
// ..."); Reason is for programs, ID (zero when the certificate did not
// parse as an SVID) names the peer.
type VerifyError struct {
	Reason Reason
	ID     ID
	err    error
}

func (e *VerifyError) Error() string { return e.err.Error() }

// Unwrap returns the underlying error (ErrNotSVID, ErrWeakKey, ... where
// one applies).
func (e *VerifyError) Unwrap() error { return e.err }

// refusal makes a VerifyError whose message is errorf(format, args...).
func refusal(r Reason, id ID, format string, args ...any) error {
	return &VerifyError{Reason: r, ID: id, err: errorf(format, args...)}
}

// ReasonOf returns the Reason of the VerifyError in err's chain, or "".
func ReasonOf(err error) Reason {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Reason
	}
	return ""
}

// certName names a certificate in a message: its URI SAN, its common name
// or its serial.
func certName(c *x509.Certificate) string {
	if c == nil {
		return "a nil certificate"
	}
	if len(c.URIs) == 1 {
		return c.URIs[0].String()
	}
	if c.Subject.CommonName != "" {
		return "certificate " + quote(c.Subject.CommonName)
	}
	return "certificate with serial " + c.SerialNumber.Text(16)
}
