package mcpauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/testca"
)

// BenchmarkHandlerInProcess measures the CPU cost of the adapter without
// the network: the MCP handler of the example server called directly with
// a recorded response, with and without the Guard around it.
func BenchmarkHandlerInProcess(b *testing.B) {
	v, authz, state := benchDeps(b)
	mk := func(guarded bool, audit *audit.Log) http.Handler {
		srv := mcpexample.NewServer()
		var h http.Handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true})
		if guarded {
			g, err := mcpauth.New(v, authz, mcpauth.WithAuditLog(audit))
			if err != nil {
				b.Fatal(err)
			}
			g.Install(srv)
			h = g.Handler(h)
		}
		return h
	}
	audit, err := audit.Open(filepath.Join(b.TempDir(), "audit.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer audit.Close()
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"baseline", mk(false, nil)}, {"adapter", mk(true, audit)}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "https://localhost/mcp", strings.NewReader(callBody))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
				req.TLS = state
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, req)
				if w.Code != 200 || !strings.Contains(w.Body.String(), "mention") {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}

// BenchmarkGuardOnly measures what the adapter itself does per tools/call
// (Handler and Middleware around trivial handlers, audit to a file).
func BenchmarkGuardOnly(b *testing.B) {
	v, authz, state := benchDeps(b)
	audit, err := audit.Open(filepath.Join(b.TempDir(), "audit.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer audit.Close()
	g, err := mcpauth.New(v, authz, mcpauth.WithAuditLog(audit))
	if err != nil {
		b.Fatal(err)
	}
	tool := func(context.Context, string, mcp.Request) (mcp.Result, error) { return &mcp.CallToolResult{}, nil }
	mw := g.Middleware()(tool)
	h := g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := &mcp.ServerRequest[*mcp.CallToolParamsRaw]{Params: &mcp.CallToolParamsRaw{Name: "search_docs"},
			Extra: &mcp.RequestExtra{Header: r.Header}}
		if _, err := mw(r.Context(), "tools/call", req); err != nil {
			b.Fatal(err)
		}
		w.WriteHeader(200)
	}))
	ctx := g.ConnContext(context.Background(), nil)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "https://localhost/mcp", nil).WithContext(ctx)
		req.TLS = state
		req.RemoteAddr = "127.0.0.1:5555"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// benchDeps returns a verifier trusting an in-memory test CA, the starter
// policy and the TLS state of a connection from a reader.
func benchDeps(b testing.TB) (*identity.Verifier, *policy.Live, *tls.ConnectionState) {
	tca := testca.NewCA(b, "acme.test")
	bundle, err := trust.NewBundle([]*x509.Certificate{tca.Root()})
	if err != nil {
		b.Fatal(err)
	}
	v, err := identity.NewVerifier(trust.NewBundleStore(bundle), identity.WithTrustDomains("acme.test"))
	if err != nil {
		b.Fatal(err)
	}
	authz, err := policy.New([]string{starterPolicy})
	if err != nil {
		b.Fatal(err)
	}
	reader := tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	return v, authz, &tls.ConnectionState{PeerCertificates: reader.Chain}
}
