package gateway_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/gateway"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

// FuzzVerifyCaller feeds VerifyCaller what an attacker could send straight
// to an upstream: any header with any body and session. It never panics,
// and accepts only one request: the one a gateway's assertion (signed
// here by hand from the documented format, with go-jose) was signed for,
// unaltered.
func FuzzVerifyCaller(f *testing.F) {
	tca := testca.NewCA(f, "acme.test")
	b, err := trust.NewBundle([]*x509.Certificate{tca.Root()})
	if err != nil {
		f.Fatal(err)
	}
	v, err := identity.NewVerifier(trust.NewBundleStore(b), identity.WithTrustDomains("acme.test"))
	if err != nil {
		f.Fatal(err)
	}
	gw := tca.CreateSVID("spiffe://acme.test/server/gateway")
	now := time.Now()
	goodBody := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{}}}`)
	sum := sha256.Sum256(goodBody)
	claims, _ := json.Marshal(map[string]any{"iss": "spiffe://acme.test/server/gateway", "sub": "spiffe://acme.test/client/alice",
		"aud": "http://127.0.0.1/mcp", "iat": now.Unix(), "exp": now.Add(10 * time.Second).Unix(), "jti": "n1", "htm": "POST", "sid": "s1",
		"body_sha256": base64.RawURLEncoding.EncodeToString(sum[:]), "roles": []string{"reader"}, "serial": "0x1"})
	x5c := make([]string, len(gw.Chain))
	for i, c := range gw.Chain {
		x5c[i] = base64.StdEncoding.EncodeToString(c.Raw)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: gw.Key}, (&jose.SignerOptions{}).WithType(gateway.CallerType).WithHeader("x5c", x5c))
	if err != nil {
		f.Fatal(err)
	}
	jws, err := signer.Sign(claims)
	if err != nil {
		f.Fatal(err)
	}
	good, err := jws.CompactSerialize()
	if err != nil {
		f.Fatal(err)
	}
	opts := []gateway.VerifyOption{gateway.WithGateways("spiffe://acme.test/server/gateway"), gateway.WithAudience("http://127.0.0.1/mcp"),
		gateway.WithVerifyClock(clock.NewFake(now))}
	r := httptest.NewRequest("POST", "/mcp", bytes.NewReader(goodBody))
	r.Header.Set(gateway.CallerHeader, good)
	r.Header.Set("Mcp-Session-Id", "s1")
	if _, err := gateway.VerifyCaller(r, v, opts...); err != nil {
		f.Fatalf("the assertion signed by hand from the documented format: %v", err)
	}
	f.Add(good, "s1", goodBody)
	for _, s := range []string{
		"", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
		"eyJhbGciOiJFUzI1NiIsInR5cCI6Im1jcGNhLWNhbGxlcitqd3QiLCJ4NWMiOlsiQUFBQSJdfQ.e30.AAAA",
		"eyJhbGciOiJFUzI1NiIsInR5cCI6Im1jcGNhLWNhbGxlcitqd3QiLCJUWVAiOiJ4In0.e30.AAAA",
	} {
		f.Add(s, "", []byte(nil))
	}
	f.Add(good, "s2", goodBody)
	f.Add(good, "s1", append(bytes.Clone(goodBody), ' '))
	f.Fuzz(func(t *testing.T, h, sid string, body []byte) {
		r := httptest.NewRequest("POST", "/mcp", bytes.NewReader(body))
		r.Header.Set(gateway.CallerHeader, h)
		if sid != "" {
			r.Header.Set("Mcp-Session-Id", sid)
		}
		c, err := gateway.VerifyCaller(r, v, opts...)
		if err == nil && (h != good || r.Header.Get("Mcp-Session-Id") != "s1" || !bytes.Equal(body, goodBody)) {
			t.Fatalf("accepted %q for session %q and body %q: %+v", h, sid, body, c)
		}
	})
}
