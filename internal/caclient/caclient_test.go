package caclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func token(payload string) string {
	return "eyJhbGciOiJFUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".sig"
}

func TestReadTokenClaimsErrors(t *testing.T) {
	cases := []struct{ tok, msg string }{
		{"garbage", "the token is not a JWT"},
		{"a.!!!.c", "the token payload is not base64url"},
		{token("[1,2]"), "the token payload is refused: json: cannot unmarshal array into Go value of type caclient.TokenClaims"},
		{token(`{"sans":["spiffe://a.test/client/a"],"SANS":["spiffe://a.test/client/b"]}`), `the token payload is refused: keys "sans" and "SANS" differ only in case`},
		{token(`{"sub":"x"}`), "the token names no SANs"},
	}
	for _, c := range cases {
		_, err := ReadTokenClaims(c.tok)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: got %v, want %q", c.tok, err, c.msg)
		}
	}
}

func TestCSRForTokenCarriesTheTokenSANs(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := CSRForToken(token(`{"sub":"spiffe://a.test/server/s","sans":["spiffe://a.test/server/s","s.a.test","127.0.0.1"]}`), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != "spiffe://a.test/server/s" || len(csr.DNSNames) != 1 || len(csr.IPAddresses) != 1 {
		t.Fatalf("CSR names %v %v %v", csr.URIs, csr.DNSNames, csr.IPAddresses)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
}

func TestNew(t *testing.T) {
	if _, err := New("http://ca", nil); err == nil || !strings.Contains(err.Error(), "must start with https://") {
		t.Fatalf("got %v", err)
	}
	if _, err := New("https://ca", nil); err == nil || !strings.Contains(err.Error(), "no root certificates") {
		t.Fatalf("got %v", err)
	}
	e := &APIError{Status: 401, Message: "token already used"}
	if e.Error() != "the CA answered 401: token already used" {
		t.Fatal(e.Error())
	}
}

// FuzzReadTokenClaims: untrusted token bytes never panic the client.
func FuzzReadTokenClaims(f *testing.F) {
	f.Add(token(`{"sub":"spiffe://a.test/client/c","sans":["spiffe://a.test/client/c"]}`))
	f.Add("a.b.c")
	f.Add("")
	f.Add(token(`{"sans":[1]}`))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Fuzz(func(t *testing.T, tok string) {
		if c, err := ReadTokenClaims(tok); err == nil && len(c.SANs) == 0 {
			t.Fatal("accepted a token without SANs")
		}
		_, _ = CSRForToken(tok, key)
	})
}

// The "aud" claim may be one string (RFC 7519, as the step CLI writes it)
// or an array; anything else is refused before the token is sent.
func TestReadTokenClaimsAudience(t *testing.T) {
	for payload, want := range map[string]string{
		`{"sans":["spiffe://a.test/client/a"],"aud":"https://ca.test/1.0/sign"}`:                   "https://ca.test/1.0/sign",
		`{"sans":["spiffe://a.test/client/a"],"aud":["https://ca.test/1.0/sign","https://other"]}`: "https://ca.test/1.0/sign https://other",
	} {
		c, err := ReadTokenClaims(token(payload))
		if err != nil {
			t.Fatalf("%s: %v", payload, err)
		}
		if got := strings.Join(c.Audience, " "); got != want {
			t.Errorf("%s: audience %q, want %q", payload, got, want)
		}
	}
	_, err := ReadTokenClaims(token(`{"sans":["spiffe://a.test/client/a"],"aud":7}`))
	if want := "the token payload is refused: the aud claim is not a string or an array of strings"; err == nil || err.Error() != want {
		t.Errorf("aud 7: got %v, want %q", err, want)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"5":                             5 * time.Second,
		"0":                             0,
		"-3":                            0,
		"soon":                          0,
		"99999999":                      maxRetryAfter,
		"Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second,
		"Wed, 31 Dec 2025 23:59:00 GMT": 0,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
}

// Whatever a CA sends as Retry-After, the wait is between 0 and the cap.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"5", "Thu, 01 Jan 2026 00:00:30 GMT", "-1", "1e9"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("Retry-After %q: %v", v, d)
		}
	})
}
