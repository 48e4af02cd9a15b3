package gateway

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcpca/mcpca/identity"
)

// BenchmarkCallerAssertion is the gateway's cost of the caller assertion
// of one forwarded request (sign: a new ES256 JWS bound to the request's
// method, session and body, as forward adds it), and the upstream's cost
// of checking it (verify: VerifyCaller, chain and signature included).
func BenchmarkCallerAssertion(b *testing.B) {
	s := NewBenchSetup(b, `@id("all") permit (principal, action, resource);`, map[string]string{"team": "payments"})
	tca, v, guard, caller := s.CA, s.Verifier, s.Guard, s.Caller
	gwCert := tca.CreateSVID("spiffe://acme.test/server/gateway")
	gw, err := New(guard, "http://127.0.0.1:3001/mcp", WithCallerAssertion(identity.StaticCertificate{Cert: &gwCert.TLS}))
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
