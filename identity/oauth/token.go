package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"time"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/policy"
)

// Token is a verified bearer credential and the identity it gives its
// caller. It is a value shared between requests: never modify one.
type Token struct {
	// Identity is the caller as a principal sees it: the SPIFFE ID, roles
	// and attributes (see the package documentation for the mapping).
	// NotBefore and NotAfter are the token's; Serial is nil, and
	// Fingerprint is the bound certificate's SHA-256 (zero when unbound).
	Identity *identity.Identity
	// Method is policy.AuthToken, or policy.AuthAPIKey for an API key.
	// The Resource reports policy.AuthBoundToken for a token bound to the
	// certificate presented with it (Verify's result, not this field).
	Method policy.AuthMethod

	Issuer    string
	Subject   string
	ClientID  string
	ID        string // jti
	Audience  []string
	Scopes    []string
	Expiry    time.Time // zero: does not expire (an API key may not)
	NotBefore time.Time

	// Thumbprint is the SHA-256 of the DER certificate the token is bound
	// to (RFC 8705 cnf.x5t#S256), nil when the token is not bound.
	Thumbprint []byte
	// OtherConfirmation is set when the token's cnf names a proof of
	// possession other than x5t#S256 (a DPoP key, say), which this
	// resource server cannot check: such a token is refused.
	OtherConfirmation bool

	issuedAt time.Time
}

// BearerVerifier verifies one kind of bearer credential that is not a JWT
// access token of a configured issuer: an API key, an opaque token. Plug
// one in with WithBearerVerifier; the Resource checks the audience, expiry,
// binding and scopes of what it returns. An *Error it returns is answered
// as it says; any other error as invalid_token with its message.
type BearerVerifier interface {
	VerifyBearer(ctx context.Context, token string) (*Token, error)
}

// thumbprint decodes a cnf.x5t#S256 value.
func thumbprint(s string) ([]byte, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, false
	}
	return b, true
}

// Thumbprint returns the RFC 8705 x5t#S256 value of a DER certificate:
// base64url (unpadded) of its SHA-256.
func Thumbprint(der []byte) string {
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// HasScope reports whether t carries scope s.
func (t *Token) HasScope(s string) bool { return slices.Contains(t.Scopes, s) }

// principalIdentity builds the identity of a token's principal from its
// subject and claims, for issuer is.
func principalIdentity(is Issuer, sub string, roles []string, attrs map[string]string) (*identity.Identity, error) {
	var id identity.ID
	if strings.HasPrefix(sub, "spiffe://") {
		var err error
		if id, err = identity.ParseID(sub); err != nil {
			return nil, invalidToken("subject %q is not an mcpca SPIFFE ID", truncate(sub))
		}
		if id.TrustDomain != is.TrustDomain {
			return nil, invalidToken("subject %s is outside the trust domain %s that issuer %s speaks for", sub, is.TrustDomain, is.URL)
		}
	} else {
		if !identity.ValidName(sub) {
			return nil, invalidToken("subject %q cannot name a principal: use 1-%d characters of [A-Za-z0-9._-], or a SPIFFE ID", truncate(sub), identity.MaxNameLen)
		}
		id = identity.ID{TrustDomain: is.TrustDomain, Kind: identity.KindClient, Name: sub}
	}
	return &identity.Identity{ID: id, Roles: roles, Attributes: attrs}, nil
}

// mapRoles keeps the values that are valid role names, once each, at most
// identity.MaxRoles.
func mapRoles(values []string) []string {
	var out []string
	for _, v := range values {
		if len(out) == identity.MaxRoles {
			break
		}
		if identity.ValidateRole(v) == nil && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
