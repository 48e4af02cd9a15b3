package ca

import (
	"encoding/base64"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpca/mcpca/internal/strictjson"
)

// tokenSkew is the clock skew allowed on a token's lifetime bounds, the
// same minute step-ca allows on its exp and nbf checks.
const tokenSkew = time.Minute

// readToken reads a token's payload once, strictly, before step-ca spends
// it: mcpca acts only on this reading, and step-ca then verifies the same
// bytes (the compact form has one payload, covered by the signature).
//
// The reader refuses what another JSON reader could take differently
// (duplicate keys, keys differing from a claim only in case: see
// strictjson), claims of the wrong type, a token without "exp", a lifetime
// (exp - nbf) or remaining lifetime (exp - now) beyond the CA's token limit,
// and an audience other than this CA's address with the endpoint's path.
// A refused token is not spent. The status is 400 for a malformed token
// and 401 for a well-formed one this CA does not accept.
func readToken(st *serverState, token, endpoint string, now time.Time) (*tokenPayload, int, error) {
	if err := checkCompactJWS(token); err != nil {
		return nil, http.StatusBadRequest, err
	}
	parts := strings.Split(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, http.StatusBadRequest, errorf("token payload is not base64url: %v", err)
	}
	var p tokenPayload
	if err := strictjson.Unmarshal(b, &p); err != nil {
		return nil, http.StatusBadRequest, errorf("token payload refused: %w", err)
	}
	if p.Expiry == nil {
		return nil, http.StatusBadRequest, errorf("token has no expiry (exp): mint tokens with `mcpca token`")
	}
	exp := time.Unix(*p.Expiry, 0)
	limit := st.settings.TokenTTLLimit()
	start := p.NotBefore
	if start == nil {
		start = p.IssuedAt
	}
	if start != nil {
		if life := exp.Sub(time.Unix(*start, 0)); life > limit {
			return nil, http.StatusUnauthorized, errorf("token rejected: its lifetime %s (nbf to exp) exceeds the CA's limit of %s", life, limit)
		}
	}
	if left := exp.Sub(now); left > limit+tokenSkew {
		return nil, http.StatusUnauthorized, errorf("token rejected: it expires in %s, beyond the CA's token lifetime limit of %s", left.Truncate(time.Second), limit)
	}
	want := st.settings.CAURL() + "/1.0/" + endpoint
	if len(p.Audience) == 0 {
		return nil, http.StatusUnauthorized, errorf("token rejected: it has no audience (aud); this CA accepts %s", want)
	}
	for _, a := range p.Audience {
		if !audienceIs(a, st.settings.Address, endpoint) {
			return nil, http.StatusUnauthorized, errorf("token rejected: audience %q is not this CA's %s", truncateValue(a), want)
		}
	}
	return &p, 0, nil
}

// audienceIs reports whether aud is https://<address>/1.0/<endpoint> or
// https://<address>/<endpoint> (step-ca's two forms) for this CA's address:
// the same host (case-insensitive), the same port (443 when absent on
// either side), nothing else in the URL.
func audienceIs(aud, address, endpoint string) bool {
	u, err := url.Parse(aud)
	if err != nil || u.Scheme != "https" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return false
	}
	if u.Path != "/1.0/"+endpoint && u.Path != "/"+endpoint {
		return false
	}
	host, port := splitHostPort(address)
	uport := u.Port()
	if uport == "" {
		uport = "443"
	}
	return strings.EqualFold(u.Hostname(), host) && uport == port
}

// splitHostPort splits a CA address; the port is 443 when absent.
func splitHostPort(address string) (host, port string) {
	h, p, err := net.SplitHostPort(address)
	if err != nil {
		return strings.Trim(address, "[]"), "443"
	}
	return h, p
}

// checkSerial accepts a serial number in the one form the CA's API takes:
// decimal digits, positive, no sign, spaces or leading zeros, at most 20
// bytes (RFC 5280). `mcpca revoke --serial` converts hex and openssl forms
// to it.
func checkSerial(s string) error {
	bad := func() error {
		return errorf("serial %q is not a serial number in decimal (positive, digits only, no leading zeros): `mcpca revoke --serial` also takes hex with 0x", truncateValue(s))
	}
	if s == "" || len(s) > 49 || s[0] == '0' {
		return bad()
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return bad()
		}
	}
	n, _ := new(big.Int).SetString(s, 10)
	if n.BitLen() > 160 {
		return bad()
	}
	return nil
}

// truncateValue shortens a value quoted in an error message.
func truncateValue(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
