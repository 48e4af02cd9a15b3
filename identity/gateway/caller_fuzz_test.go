package gateway_test

import (
	"crypto/x509"
	"net/http/httptest"
	"testing"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/gateway"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

// FuzzVerifyCaller feeds VerifyCaller headers an attacker could send
// straight to an upstream: it never panics and never accepts one (none is
// signed by a gateway of the CA).
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
	for _, s := range []string{
		"", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
		"eyJhbGciOiJFUzI1NiIsInR5cCI6Im1jcGNhLWNhbGxlcitqd3QiLCJ4NWMiOlsiQUFBQSJdfQ.e30.AAAA",
		"eyJhbGciOiJFUzI1NiIsInR5cCI6Im1jcGNhLWNhbGxlcitqd3QiLCJUWVAiOiJ4In0.e30.AAAA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		r := httptest.NewRequest("POST", "/mcp", nil)
		r.Header.Set(gateway.CallerHeader, h)
		if c, err := gateway.VerifyCaller(r, v, gateway.WithGateways("spiffe://acme.test/server/gateway"), gateway.WithAudience("http://127.0.0.1/mcp")); err == nil {
			t.Fatalf("accepted %q: %+v", h, c)
		}
	})
}
