package caclient

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/mcpca/mcpca/internal/strictjson"
)

// TokenClaims are the unverified claims of an enrolment token that a client
// needs to build its CSR. The CA verifies the token; a client only reads it.
type TokenClaims struct {
	Subject  string   `json:"sub"`
	SANs     []string `json:"sans"`
	Audience Audience `json:"aud"`
	Expiry   int64    `json:"exp"`
}

// Audience is the "aud" claim: a string or an array of strings (RFC 7519
// section 4.1.3); other minters, the step CLI among them, write one string.
type Audience []string

// UnmarshalJSON reads a string or an array of strings, and nothing else.
func (a *Audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = Audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("the aud claim is not a string or an array of strings")
	}
	*a = many
	return nil
}

// ReadTokenClaims decodes the payload of a compact JWS token without
// verifying it.
func ReadTokenClaims(token string) (*TokenClaims, error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return nil, errors.New("the token is not a JWT (want three dot-separated parts)")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("the token payload is not base64url: %w", err)
	}
	var c TokenClaims
	// The same strict reading as the CA's: a token the CA would refuse
	// for duplicate or case-variant keys is refused here before it is sent.
	if err := strictjson.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("the token payload is refused: %w", err)
	}
	if len(c.SANs) == 0 {
		return nil, errors.New("the token names no SANs: is it an mcpca enrolment token?")
	}
	return &c, nil
}

// CSRForToken builds a CSR for the names a token grants, signed by key.
func CSRForToken(token string, key crypto.Signer) (*x509.CertificateRequest, error) {
	c, err := ReadTokenClaims(token)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{}}
	for _, san := range c.SANs {
		switch {
		case strings.Contains(san, "://"):
			u, err := url.Parse(san)
			if err != nil {
				return nil, fmt.Errorf("token SAN %q: %w", san, err)
			}
			tmpl.URIs = append(tmpl.URIs, u)
		case net.ParseIP(san) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(san))
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, san)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("creating CSR: %w", err)
	}
	return x509.ParseCertificateRequest(der)
}
