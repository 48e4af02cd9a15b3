package ca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
)

// rawToken builds a token payload by hand: fields is the JSON text inside
// the braces after the standard claims, so tests can add duplicate and
// case-variant keys that no JSON encoder would write.
type rawToken struct {
	iss, aud, sub, jti string
	exp, nbf           int64
	sans, mcpca, extra string // JSON values; extra is raw "key":value pairs
}

func newRawToken(c *catest.CA, prov, endpoint, name string) rawToken {
	now := time.Now().Unix()
	jti := make([]byte, 8)
	_, _ = rand.Read(jti)
	sub := "spiffe://acme.test/client/" + name
	return rawToken{
		iss: prov, aud: c.URL + "/1.0/" + endpoint, sub: sub, jti: hex.EncodeToString(jti),
		exp: now + 60, nbf: now,
		sans:  `["` + sub + `"]`,
		mcpca: `{"kind":"client","name":"` + name + `","roles":["reader"]}`,
	}
}

func (r rawToken) json() string {
	s := fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":%q,"jti":%q,"iat":%d,"nbf":%d,"exp":%d,"sans":%s,"mcpca":%s`,
		r.iss, r.aud, r.sub, r.jti, r.nbf, r.nbf, r.exp, r.sans, r.mcpca)
	if r.extra != "" {
		s += "," + r.extra
	}
	return s + "}"
}

func (r rawToken) sign(t *testing.T, c *catest.CA, prov string) string {
	return ca.SignRawTokenForTest(t, c.Dir, c.Password, prov, r.json())
}

type cryptoSigner = crypto.Signer

// signRaw sends a token to /sign with a CSR for uri, at the HTTP level
// (the client's own reading of the token is skipped).
func signRaw(t *testing.T, c *catest.CA, tok, uri string) (*identity.Identity, error) {
	t.Helper()
	chain, err := c.Client.Sign(context.Background(), mustCSR(t, mustKey(t), uri), tok)
	if err != nil {
		return nil, err
	}
	return identity.FromCertificate(chain[0])
}

// The four attacks of the security review, each with a token signed by the
// restricted provisioner team-a that carries case-variant or duplicate
// copies of the claims step-ca verifies. Each is refused before the token
// is spent, naming the key; the same token without the extra keys then
// works, within team-a's limits.
func TestCaseVariantClaimsAreRefused(t *testing.T) {
	c, logs := startCA(t)
	addTeamA(t, c.Server, c.Dir, c.Password)
	admin := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "ops-admin", Roles: []string{"admin"}})

	cases := []struct {
		name, extra, sans, want string
	}{
		{"admin role outside the name pattern",
			`"ISS":"admin","SUB":"spiffe://acme.test/client/ceo","MCPCA":{"kind":"client","name":"ceo","roles":["admin"]}`, "",
			`ca: token payload refused: keys "iss" and "ISS" differ only in case`},
		{"server names outside the limits",
			`"SANS":["spiffe://acme.test/client/team-a-bot","login.bank.example","10.0.0.1"]`, "",
			`ca: token payload refused: keys "sans" and "SANS" differ only in case`},
		{"URI SAN of another identity",
			`"sans":["spiffe://acme.test/client/ceo"]`, "",
			`ca: token payload refused: duplicate key "sans"`},
		{"Unicode case folding (long s)",
			`"ſub":"spiffe://acme.test/client/ceo"`, "",
			`ca: token payload refused: keys "sub" and "ſub" differ only in case`},
		{"one-time token with an early EXP",
			`"EXP":1`, "",
			`ca: token payload refused: keys "exp" and "EXP" differ only in case`},
		{"one-time token with a second exp",
			`"exp":1`, "",
			`ca: token payload refused: duplicate key "exp"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRawToken(c, "team-a", "sign", "team-a-bot")
			rt.extra = tc.extra
			_, err := signRaw(t, c, rt.sign(t, c, "team-a"), "spiffe://acme.test/client/ceo")
			wantAPIError(t, err, 400, tc.want)
		})
	}

	// A clean token with the jti of a refused one: it was not spent.
	rt := newRawToken(c, "team-a", "sign", "team-a-bot")
	bad := rt
	bad.extra = `"EXP":1`
	bot := "spiffe://acme.test/client/team-a-bot"
	_, err := signRaw(t, c, bad.sign(t, c, "team-a"), bot)
	wantAPIError(t, err, 400, `"EXP"`)
	id, err := signRaw(t, c, rt.sign(t, c, "team-a"), bot)
	if err != nil {
		t.Fatalf("the refusal spent the token: %v", err)
	}
	if id.ID.String() != "spiffe://acme.test/client/team-a-bot" || len(id.Roles) != 1 || id.Roles[0] != "reader" {
		t.Fatalf("issued %s %v", id.ID, id.Roles)
	}
	// The log names the provisioner that signed.
	if !strings.Contains(logs.String(), `"provisioner":"team-a","identity":"spiffe://acme.test/client/team-a-bot"`) {
		t.Fatalf("log does not name team-a for its certificate:\n%s", logs.String())
	}
	// One-time: the clean token is refused the second time, also long after
	// a commit that prunes expired records (its record lives past its exp).
	_, err = signRaw(t, c, rt.sign(t, c, "team-a"), bot)
	wantAPIError(t, err, 401, "token already used")

	// Revocation of another identity's certificate with "ISS":"admin".
	serial := admin.Leaf.SerialNumber.String()
	rv := newRawToken(c, "team-a", "revoke", "x")
	rv.sub = serial
	rv.extra = `"ISS":"admin"`
	err = c.Client.Revoke(context.Background(), serial, rv.sign(t, c, "team-a"), "")
	wantAPIError(t, err, 400, `ca: token payload refused: keys "iss" and "ISS" differ only in case`)
	rv.extra = ""
	err = c.Client.Revoke(context.Background(), serial, rv.sign(t, c, "team-a"), "")
	wantAPIError(t, err, 403, `provisioner "team-a" may not revoke spiffe://acme.test/client/ops-admin`)
	if _, err := c.Client.Renew(context.Background(), admin); err != nil {
		t.Fatalf("the admin's certificate was revoked: %v", err)
	}
}

// Tokens must carry a bounded expiry and this CA's exact audience, and have
// the right shape, all checked before the token is spent.
func TestLooseTokensAreRefused(t *testing.T) {
	c, _ := startCA(t)
	now := time.Now().Unix()
	cases := []struct {
		name   string
		edit   func(*rawToken)
		status int
		want   string
	}{
		{"no exp", func(r *rawToken) { r.exp = 0 }, 400, "ca: token has no expiry (exp): mint tokens with `mcpca token`"},
		{"exp ten years ahead", func(r *rawToken) { r.exp = now + 10*365*86400; r.nbf = now + 10*365*86400 - 60 }, 401,
			"beyond the CA's token lifetime limit of 24h0m0s"},
		{"lifetime beyond the limit", func(r *rawToken) { r.nbf = r.exp - 30*3600 - 60 }, 401,
			"ca: token rejected: its lifetime 30h1m0s (nbf to exp) exceeds the CA's limit of 24h0m0s"},
		{"audience on another port", func(r *rawToken) { r.aud = "https://localhost:1/sign" }, 401,
			`ca: token rejected: audience "https://localhost:1/sign" is not this CA's ` + c.URL + "/1.0/sign"},
		{"audience of another endpoint", func(r *rawToken) { r.aud = c.URL + "/1.0/revoke" }, 401,
			`ca: token rejected: audience "` + c.URL + `/1.0/revoke" is not this CA's`},
		{"no audience", func(r *rawToken) { r.aud = "" }, 401,
			"ca: token rejected: it has no audience (aud); this CA accepts " + c.URL + "/1.0/sign"},
		{"audience of the wrong type", func(r *rawToken) { r.extra = `"aud":5`; r.aud = "" }, 400,
			"ca: token payload refused: the aud claim is not a string or an array of strings"},
		{"sans of the wrong type", func(r *rawToken) { r.sans = `"spiffe://acme.test/client/bob"` }, 400,
			"ca: token payload refused: json: cannot unmarshal string into Go struct field tokenPayload.sans of type []string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRawToken(c, "admin", "sign", "bob")
			tc.edit(&rt)
			js := rt.json()
			if rt.exp == 0 {
				js = strings.Replace(js, `,"exp":0`, "", 1)
			}
			if rt.aud == "" {
				js = strings.Replace(js, `"aud":"",`, "", 1)
			}
			_, err := signRaw(t, c, ca.SignRawTokenForTest(t, c.Dir, c.Password, "admin", js), rt.sub)
			wantAPIError(t, err, tc.status, tc.want)
			// The refused token was not spent: the same jti, well formed,
			// is accepted.
			good := newRawToken(c, "admin", "sign", "bob")
			good.jti = rt.jti
			if _, err := signRaw(t, c, good.sign(t, c, "admin"), good.sub); err != nil {
				t.Fatalf("the refusal spent the token: %v", err)
			}
		})
	}
}

// /sign applies the key policy before the token is spent.
func TestSignRefusesWeakKeys(t *testing.T) {
	c, _ := startCA(t)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for _, tc := range []struct {
		key  cryptoSigner
		want string
	}{
		{p224, "ca: certificate request: identity: ECDSA P-224 key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits"},
		{rsa1024, "ca: certificate request: identity: RSA-1024 key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits"},
	} {
		tok := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "weak"})
		csr, err := catest.CSRForToken(tok, tc.key)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Client.Sign(context.Background(), csr, tok)
		wantAPIError(t, err, 400, tc.want)
		// Not spent: the same token with a good key works.
		if _, err := c.EnrollToken(tok); err != nil {
			t.Fatalf("the refusal spent the token: %v", err)
		}
	}
}

// Serials on /revoke must be canonical decimal; anything else is refused
// with the value named, and the CRL gains nothing.
func TestRevokeRefusesMalformedSerials(t *testing.T) {
	c, _ := startCA(t)
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "keep"})
	before := crlEntries(t, c)
	for _, serial := range []string{"0x21829D", "zzz", "-5", "  12", "+12", "007", "0", "1e5", strings.Repeat("9", 60)} {
		tok, err := ca.MintRevokeToken(c.Dir, c.Password, "", serial)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Client.Revoke(context.Background(), serial, tok, "")
		want := fmt.Sprintf("ca: serial %q is not a serial number in decimal", serial)
		if len(serial) > 64 {
			want = "is not a serial number in decimal"
		}
		wantAPIError(t, err, 400, want)
	}
	if after := crlEntries(t, c); after != before {
		t.Fatalf("CRL entries %d -> %d", before, after)
	}
	if _, err := c.Client.Renew(context.Background(), cert); err != nil {
		t.Fatal(err)
	}
	// A token for one serial cannot revoke another.
	tok, _ := ca.MintRevokeToken(c.Dir, c.Password, "", "12345")
	err := c.Client.Revoke(context.Background(), cert.Leaf.SerialNumber.String(), tok, "")
	wantAPIError(t, err, 403, `ca: the token's subject "12345" is not the serial `+cert.Leaf.SerialNumber.String()+" being revoked")
}

func crlEntries(t *testing.T, c *catest.CA) int {
	t.Helper()
	der, err := c.Client.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return len(crl.RevokedCertificateEntries)
}
