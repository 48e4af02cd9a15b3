package gateway

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/testca"
)

// TestAssertionSignedBothWays checks that the assertions the gateway signs
// with the header made once (ECDSA P-256 and P-384, Ed25519) and through
// go-jose (RSA) are read by VerifyCaller, and that a changed byte of any of
// them is refused.
func TestAssertionSignedBothWays(t *testing.T) {
	s := NewBenchSetup(t, `@id("all") permit (principal, action, resource);`, nil)
	tca, v, guard, caller := s.CA, s.Verifier, s.Guard, s.Caller
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	for name, key := range map[string]crypto.Signer{"ES256": p256, "ES384": p384, "EdDSA": ed, "RS256": rk} {
		t.Run(name, func(t *testing.T) {
			svid := tca.CreateSVID("spiffe://acme.test/server/gateway", testca.WithPublicKey(key.Public()))
			cert := tls.Certificate{PrivateKey: key, Leaf: svid.Leaf}
			for _, c := range svid.Chain {
				cert.Certificate = append(cert.Certificate, c.Raw)
			}
			gw, err := New(guard, "http://127.0.0.1:3001/mcp", WithCallerAssertion(identity.StaticCertificate{Cert: &cert}))
			if err != nil {
				t.Fatal(err)
			}
			a, err := gw.assertCaller(caller, http.MethodPost, "s1", body)
			if err != nil {
				t.Fatal(err)
			}
			if fast := gw.assert.cur.Load().header != ""; fast == (name == "RS256") {
				t.Fatalf("header made once: %v, want %v", fast, name != "RS256")
			}
			check := func(a string) (*Caller, error) {
				up := httptest.NewRequest("POST", "/mcp", bytes.NewReader(body))
				up.Header.Set(CallerHeader, a)
				up.Header.Set(sessionHeader, "s1")
				return VerifyCaller(up, v, WithGateways("spiffe://acme.test/server/gateway"), WithAudience("http://127.0.0.1:3001/mcp"))
			}
			got, err := check(a)
			if err != nil {
				t.Fatalf("VerifyCaller: %v", err)
			}
			if got.ID != "spiffe://acme.test/client/alice" || len(got.Roles) != 1 || got.Roles[0] != "reader" {
				t.Fatalf("caller %+v", got)
			}
			// A changed last character of the signature: refused.
			last := a[len(a)-2]
			bad := a[:len(a)-2] + string("AB"[map[bool]int{true: 1}[last == 'A']]) + a[len(a)-1:]
			if _, err := check(bad); err == nil || !strings.Contains(err.Error(), "signature") {
				t.Fatalf("changed signature: %v, want a signature refusal", err)
			}
		})
	}
}

// rawSignature turns ASN.1 integers of any length up to the curve's size
// into R and S of that size, and refuses what is not one signature.
func TestRawSignature(t *testing.T) {
	for _, tc := range []struct {
		name string
		der  []byte
		want []byte
		err  string
	}{
		// SEQUENCE { INTEGER 0x00ff (leading zero: the high bit), INTEGER 0x01 }
		{"short", []byte{0x30, 0x07, 0x02, 0x02, 0x00, 0xff, 0x02, 0x01, 0x01}, []byte{0, 0, 0, 0xff, 0, 0, 0, 1}, ""},
		{"full", []byte{0x30, 0x0c, 0x02, 0x04, 0x7f, 1, 2, 3, 0x02, 0x04, 0x01, 2, 3, 4}, []byte{0x7f, 1, 2, 3, 1, 2, 3, 4}, ""},
		{"too long", []byte{0x30, 0x0a, 0x02, 0x05, 0x7f, 1, 2, 3, 4, 0x02, 0x01, 0x01}, nil, "an ECDSA signature too long for its curve"},
		{"trailing", []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00}, nil, "an ECDSA signature that is not ASN.1"},
		{"one integer", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, nil, "an ECDSA signature that is not ASN.1"},
		{"empty", nil, nil, "an ECDSA signature that is not ASN.1"},
	} {
		got, err := rawSignature(tc.der, 4)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: %x %v, want %x", tc.name, got, err, tc.want)
		}
	}
}
