package identity

import (
	"errors"
	"fmt"
)

// errorf formats an error carrying the package prefix: every error returned
// by an exported function or method of this package starts with
// "identity: ", once. Only the exported boundary calls it (directly or
// through refusal); the unexported helpers behind it (checkPublicKey, ...)
// return errors without the prefix.
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
