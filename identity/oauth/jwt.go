package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/internal/strictjson"
)

// jwtHeader is the protected header as signed.
type jwtHeader struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Typ  string   `json:"typ"`
	Crit []string `json:"crit"`
}

// jwtClaims are the claims read from a verified payload (RFC 9068, RFC
// 8705, RFC 8693's client_id).
type jwtClaims struct {
	Issuer    string                     `json:"iss"`
	Subject   string                     `json:"sub"`
	Audience  json.RawMessage            `json:"aud"`
	Expiry    *float64                   `json:"exp"`
	NotBefore *float64                   `json:"nbf"`
	IssuedAt  *float64                   `json:"iat"`
	ID        string                     `json:"jti"`
	ClientID  string                     `json:"client_id"`
	Scope     string                     `json:"scope"`
	Cnf       map[string]json.RawMessage `json:"cnf"`
	Attrs     map[string]json.RawMessage `json:"attrs"`
}

// looksLikeJWT reports whether s has the shape of a compact JWS.
func looksLikeJWT(s string) bool { return strings.Count(s, ".") == 2 }

// verifyJWT verifies a JWT access token: signature by a key of its
// (trusted) issuer, typ, iss, aud, exp, nbf, iat, and maps its claims.
func (r *Resource) verifyJWT(ctx context.Context, raw string, now time.Time) (*Token, error) {
	jws, err := jose.ParseSigned(raw, r.cfg.algs)
	if err != nil {
		return nil, invalidToken("not a signed JWT with an accepted algorithm: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, invalidToken("%d signatures, want one", len(jws.Signatures))
	}
	seg, rest, _ := strings.Cut(raw, ".")
	hb, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, invalidToken("header: %v", err)
	}
	var h jwtHeader
	if err := strictjson.Unmarshal(hb, &h); err != nil {
		return nil, invalidToken("header: %v", err)
	}
	switch strings.ToLower(h.Typ) {
	case "at+jwt", "application/at+jwt", "jwt", "":
	default:
		// An ID token, a logout token, a caller assertion: never an
		// access token (RFC 9068 section 4, RFC 8725 section 3.11).
		return nil, invalidToken("token type %q is not an access token (want at+jwt)", truncate(h.Typ))
	}
	if len(h.Crit) > 0 {
		return nil, invalidToken("critical header parameters %v are not understood", h.Crit)
	}
	// The issuer picks the keys; the payload is read for it before the
	// signature is checked, and believed only once it is.
	pseg, _, _ := strings.Cut(rest, ".")
	pb, err := base64.RawURLEncoding.DecodeString(pseg)
	if err != nil {
		return nil, invalidToken("payload: %v", err)
	}
	if err := strictjson.Check(pb); err != nil {
		return nil, invalidToken("payload: %v", err)
	}
	iv, _ := strictjson.Lookup(pb, "iss")
	iss, _ := strictjson.StringValue(iv)
	is := r.forIssuer(iss)
	if is == nil {
		return nil, invalidToken("issuer %q is not trusted here", truncate(iss))
	}
	keys, err := is.key(ctx, h.Kid, h.Alg)
	if err != nil {
		return nil, invalidToken("the keys of issuer %s could not be fetched: %v", is.URL, err)
	}
	if len(keys) == 0 {
		return nil, invalidToken("issuer %s has no key %q for %s", is.URL, truncate(h.Kid), h.Alg)
	}
	var payload []byte
	for _, k := range keys {
		if payload, err = jws.Verify(k.Key); err == nil {
			break
		}
	}
	if err != nil {
		return nil, invalidToken("signature does not verify with the key of issuer %s", is.URL)
	}
	t, c, err := mapClaims(payload, is.Issuer, r.cfg.roleClaims)
	if err != nil {
		return nil, err
	}
	if c.Issuer != is.URL {
		return nil, invalidToken("issuer %q, want %q", truncate(c.Issuer), is.URL)
	}
	if c.Expiry == nil {
		return nil, invalidToken("no exp claim: an access token must expire")
	}
	if c.IssuedAt != nil && t.issuedAt.After(now.Add(r.cfg.leeway)) {
		return nil, invalidToken("issued in the future (iat %s)", t.issuedAt.UTC().Format(time.RFC3339))
	}
	if err := r.checkTime(t, now); err != nil {
		return nil, err
	}
	return t, nil
}

// Inspect maps the claims of a JWT access token to the Token it would
// give WITHOUT verifying it: neither signature, nor issuer, audience or
// time. It is for `mcpca policy explain`, which shows what a token would
// be allowed; never authenticate a caller with it. is names the issuer's
// trust domain; an empty is.URL takes the token's iss.
func Inspect(token string, is Issuer) (*Token, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, invalidToken("not a JWT (three dot-separated parts)")
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, invalidToken("payload: %v", err)
	}
	if err := strictjson.Check(pb); err != nil {
		return nil, invalidToken("payload: %v", err)
	}
	if is.URL == "" {
		iv, _ := strictjson.Lookup(pb, "iss")
		is.URL, _ = strictjson.StringValue(iv)
	}
	if err := is.check(); err != nil {
		return nil, err
	}
	t, _, err := mapClaims(pb, is, DefaultRoleClaims)
	return t, err
}

// mapClaims reads a payload's claims and maps them to a Token for issuer
// is, checking their shape (not their signature, issuer or time).
func mapClaims(payload []byte, is Issuer, roleClaims []string) (*Token, *jwtClaims, error) {
	var c jwtClaims
	if err := strictjson.Unmarshal(payload, &c); err != nil {
		return nil, nil, invalidToken("claims: %v", err)
	}
	t := &Token{Method: policy.AuthToken, Issuer: c.Issuer, Subject: c.Subject, ClientID: c.ClientID, ID: c.ID,
		Scopes: strings.Fields(c.Scope)}
	var err error
	if t.Audience, err = audience(c.Audience); err != nil {
		return nil, nil, err
	}
	var ok bool
	if c.Expiry != nil {
		if t.Expiry, ok = numericDate(*c.Expiry); !ok {
			return nil, nil, invalidToken("exp is not a date")
		}
	}
	if c.NotBefore != nil {
		if t.NotBefore, ok = numericDate(*c.NotBefore); !ok {
			return nil, nil, invalidToken("nbf is not a date")
		}
	}
	if c.IssuedAt != nil {
		if t.issuedAt, ok = numericDate(*c.IssuedAt); !ok {
			return nil, nil, invalidToken("iat is not a date")
		}
		if t.NotBefore.IsZero() {
			t.NotBefore = t.issuedAt
		}
	}
	if c.Subject == "" {
		return nil, nil, invalidToken("no sub claim: the token names no principal")
	}
	for k, v := range c.Cnf {
		if k != "x5t#S256" {
			t.OtherConfirmation = true
			continue
		}
		var s string
		if unmarshalJSON(v, &s) != nil {
			return nil, nil, invalidToken("cnf.x5t#S256 is not a string")
		}
		if t.Thumbprint, ok = thumbprint(s); !ok {
			return nil, nil, invalidToken("cnf.x5t#S256 is not the base64url SHA-256 of a certificate")
		}
	}
	var roleValues []string
	for _, name := range roleClaims {
		if v, ok := strictjson.Lookup(payload, name); ok {
			roleValues = append(roleValues, stringsOf(v)...)
		}
	}
	attrs := map[string]string{}
	for k, v := range c.Attrs {
		var s string
		if unmarshalJSON(v, &s) == nil && identity.ValidateAttribute(k, s) == nil && len(attrs) < identity.MaxAttributes-2 {
			attrs[k] = s
		}
	}
	if identity.ValidateAttribute("oauth.issuer", t.Issuer) == nil {
		attrs["oauth.issuer"] = t.Issuer
	}
	if t.ClientID != "" && identity.ValidateAttribute("oauth.client_id", t.ClientID) == nil {
		attrs["oauth.client_id"] = t.ClientID
	}
	if t.Identity, err = principalIdentity(is, c.Subject, mapRoles(roleValues), attrs); err != nil {
		return nil, nil, err
	}
	t.Identity.NotBefore, t.Identity.NotAfter = t.NotBefore, t.Expiry
	if t.Thumbprint != nil {
		copy(t.Identity.Fingerprint[:], t.Thumbprint)
	}
	return t, &c, nil
}

// audience reads aud, a string or an array of strings.
func audience(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 {
		return nil, invalidToken("no aud claim: the token names no resource")
	}
	var one string
	if unmarshalJSON(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if unmarshalJSON(raw, &many) == nil {
		return many, nil
	}
	return nil, invalidToken("aud is neither a string nor an array of strings")
}

// stringsOf reads a claim as an array of strings or a space-separated
// string; other values give nothing.
func stringsOf(raw []byte) []string {
	var one string
	if unmarshalJSON(raw, &one) == nil {
		return strings.Fields(one)
	}
	var many []any
	if unmarshalJSON(raw, &many) != nil {
		return nil
	}
	var out []string
	for _, v := range many {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// numericDate converts a JWT NumericDate.
func numericDate(f float64) (time.Time, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}
