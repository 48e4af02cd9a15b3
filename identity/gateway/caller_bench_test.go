package gateway

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

// BenchmarkCallerAssertion is the gateway's cost of the caller assertion
// of one forwarded request (sign: a new ES256 JWS bound to the request's
// method, session and body, as forward adds it), and the upstream's cost
// of checking it (verify: VerifyCaller, chain and signature included).
func BenchmarkCallerAssertion(b *testing.B) {
	tca := testca.NewCA(b, "acme.test")
	bundle, err := trust.NewBundle([]*x509.Certificate{tca.Root()})
	if err != nil {
		b.Fatal(err)
	}
	v, err := identity.NewVerifier(trust.NewBundleStore(bundle), identity.WithTrustDomains("acme.test"))
	if err != nil {
		b.Fatal(err)
	}
	pf := filepath.Join(b.TempDir(), "policy.cedar")
	if err := os.WriteFile(pf, []byte(`@id("all") permit (principal, action, resource);`), 0o600); err != nil {
		b.Fatal(err)
	}
	set, err := policy.New([]string{pf}, policy.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	guard, err := mcpauth.New(v, set, mcpauth.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	gwCert := tca.CreateSVID("spiffe://acme.test/server/gateway")
	gw, err := New(guard, "http://127.0.0.1:3001/mcp", WithCallerAssertion(identity.StaticCertificate{Cert: &gwCert.TLS}))
	if err != nil {
		b.Fatal(err)
	}
	alice := tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"), testca.WithAttributes(map[string]string{"team": "payments"}))
	r := httptest.NewRequest("POST", "https://127.0.0.1/mcp", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: alice.Chain}
	caller, err := guard.Authenticate(r)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"gateway"}}}`)
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := gw.assertCaller(caller, http.MethodPost, "session-1", body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("verify", func(b *testing.B) {
		a, err := gw.assertCaller(caller, http.MethodPost, "session-1", body)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequest("POST", "/mcp", bytes.NewReader(body))
			r.Header.Set(CallerHeader, a)
			r.Header.Set(sessionHeader, "session-1")
			if _, err := VerifyCaller(r, v, WithGateways("spiffe://acme.test/server/gateway"), WithAudience("http://127.0.0.1:3001/mcp")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
