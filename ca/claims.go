package ca

import (
	"net"
	"strings"
	"time"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/caclient"
)

// ClaimName is the JWT claim that carries Claims in an enrolment token.
const ClaimName = "mcpca"

// Claims is mcpca's part of a one-time enrolment token: the identity it
// grants. The token is signed by a provisioner key, so these values are as
// trustworthy as that key; the CA still checks them against the identity
// contract and the provisioner's limits before it signs.
type Claims struct {
	Kind       identity.Kind     `json:"kind"`
	Name       string            `json:"name"`
	Roles      []string          `json:"roles,omitempty"`
	Attributes map[string]string `json:"attrs,omitempty"`
	// TTL is the lifetime of the certificate the token yields ("1h").
	TTL string `json:"ttl,omitempty"`
}

// tokenPayload is the JSON payload of an enrolment token: step-ca's JWK token
// claims plus ours. It is read only with readToken (strictly, once).
type tokenPayload struct {
	Issuer    string            `json:"iss"`
	Subject   string            `json:"sub"`
	Audience  caclient.Audience `json:"aud"`
	NotBefore *int64            `json:"nbf,omitempty"`
	IssuedAt  *int64            `json:"iat,omitempty"`
	Expiry    *int64            `json:"exp,omitempty"`
	ID        string            `json:"jti"`
	SANs      []string          `json:"sans"`
	Mcpca     *Claims           `json:"mcpca,omitempty"`
}

// validateClaims checks a token's identity claims against the identity
// contract and the CA's settings, and returns the ID and certificate lifetime.
// Errors name the offending value. A claim that breaks the identity contract
// is refused with package identity's error as it is ("identity: 33 roles,
// the limit is 32"): it already says what went wrong, so it is not wrapped
// in a second prefix.
func validateClaims(s *Settings, sub string, sans []string, c *Claims) (identity.ID, time.Duration, error) {
	if c == nil {
		return identity.ID{}, 0, errorf("token has no %q claim: mint enrolment tokens with `mcpca token`", ClaimName)
	}
	id, err := identity.NewID(s.TrustDomain, c.Kind, c.Name)
	if err != nil {
		return identity.ID{}, 0, err // identity's message names the value
	}
	if sub != id.String() {
		return identity.ID{}, 0, errorf("token subject %q does not match its identity %q", sub, id)
	}
	seenID := false
	for _, san := range sans {
		switch {
		case san == id.String():
			seenID = true
		case strings.Contains(san, "://") || strings.Contains(san, "@"):
			return identity.ID{}, 0, errorf("token SAN %q is not allowed: an identity has exactly one URI SAN, its SPIFFE ID", san)
		case c.Kind != identity.KindServer:
			return identity.ID{}, 0, errorf("token SAN %q is not allowed: only server identities carry DNS names or IP addresses", san)
		case net.ParseIP(san) == nil && !validDNSName(san):
			return identity.ID{}, 0, errorf("token SAN %q is not a valid DNS name or IP address", san)
		}
	}
	if !seenID {
		return identity.ID{}, 0, errorf("token SANs do not include the SPIFFE ID %q", id)
	}
	if err := identity.ValidateRoles(c.Roles); err != nil {
		return identity.ID{}, 0, err // identity's message names the value
	}
	if err := identity.ValidateAttributes(c.Attributes); err != nil {
		return identity.ID{}, 0, err // identity's message names the value
	}
	ttl := s.DefaultTTL.Duration
	if c.TTL != "" {
		if ttl, err = time.ParseDuration(c.TTL); err != nil {
			return identity.ID{}, 0, errorf("token ttl %q: %v", c.TTL, err)
		}
	}
	if ttl < MinTTL || ttl > s.MaxTTL.Duration {
		return identity.ID{}, 0, errorf("certificate lifetime %s is outside the CA's limits [%s, %s]", ttl, MinTTL, s.MaxTTL.Duration)
	}
	return id, ttl, nil
}

// validDNSName accepts host names and a leading "*." wildcard label.
func validDNSName(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
