package mcpauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/testca"
)

// serveGuarded serves hs on a loopback TLS listener and returns the MCP
// URL; the server stops when the test ends.
func serveGuarded(t *testing.T, hs *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })
	return "https://" + ln.Addr().String() + "/mcp"
}

func connectAs(t *testing.T, url string, tca *testca.CA, cert *tls.Certificate) (*mcp.ClientSession, error) {
	t.Helper()
	v := verifierOf(t, tca)
	cfg := identity.ClientTLSConfig(identity.StaticCertificate{Cert: cert}, v, identity.WithServerName("127.0.0.1"))
	if cert == nil {
		cfg.GetClientCertificate = nil
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(hc.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err == nil {
		t.Cleanup(func() { _ = cs.Close() })
	}
	return cs, err
}

func verifierOf(t testing.TB, tca *testca.CA) *identity.Verifier {
	t.Helper()
	b, err := trust.NewBundle([]*x509.Certificate{tca.Root()})
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(trust.NewBundleStore(b), identity.WithTrustDomains("acme.test"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// One call (Guard.Server) wires the middleware, the handler, mTLS and the
// connection context: the policy decides, lists are filtered.
func TestServerWiresEverything(t *testing.T) {
	g, tca := offline(t)
	server := tca.CreateSVID("spiffe://acme.test/server/files", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	url := serveGuarded(t, g.Server("127.0.0.1:0", "/mcp", mcpexample.NewServer(), identity.StaticCertificate{Cert: &server.TLS}, nil))
	reader := tca.CreateSVID("spiffe://acme.test/client/reporter", testca.WithRoles("reader"))
	cs, err := connectAs(t, url, tca, &reader.TLS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, cs, mcpexample.ToolSearchDocs, map[string]any{"query": "x"}); err != nil {
		t.Fatalf("an allowed call: %v", err)
	}
	if _, err := call(t, cs, mcpexample.ToolDeleteRecord, map[string]any{"id": "1"}); err == nil || !strings.Contains(err.Error(), mcpauth.DeniedMessage) {
		t.Fatalf("a denied call: %v", err)
	}
	tools, err := cs.ListTools(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools.Tools {
		if tool.Name == mcpexample.ToolDeleteRecord {
			t.Fatal("tools/list shows a tool the reader may not call")
		}
	}
	// Without a client certificate the TLS handshake itself fails.
	if _, err := connectAs(t, url, tca, nil); err == nil {
		t.Fatal("a client without a certificate connected")
	}
}

// Each omission in hand wiring is refused, never served.
func TestWiringOmissionsAreRefused(t *testing.T) {
	t.Run("Handler without Install", func(t *testing.T) {
		g, tca := offline(t)
		reached := false
		srv := mcpexample.NewServer() // g.Install(srv) forgotten
		h := g.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reached = true
			mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil).ServeHTTP(w, r)
		}))
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(listTools))
		req.TLS = &tls.ConnectionState{PeerCertificates: tca.CreateSVID("spiffe://acme.test/client/reporter", testca.WithRoles("reader")).Chain}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		want := `{"error":"server misconfigured","detail":"the MCP server does not authorize requests (Guard.Install was not called): nothing is served until it does"}`
		if rec.Code != http.StatusInternalServerError || strings.TrimSpace(rec.Body.String()) != want || reached {
			t.Fatalf("got %d %s (reached %v), want 500 %s", rec.Code, rec.Body.String(), reached, want)
		}
	})
	t.Run("no client certificate requested", func(t *testing.T) {
		g, tca := offline(t)
		server := tca.CreateSVID("spiffe://acme.test/server/files", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
		hs := g.Server("127.0.0.1:0", "/mcp", mcpexample.NewServer(), identity.StaticCertificate{Cert: &server.TLS}, nil)
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{server.TLS}} // a plain TLS config instead
		url := serveGuarded(t, hs)
		reader := tca.CreateSVID("spiffe://acme.test/client/reporter", testca.WithRoles("reader"))
		_, err := connectAs(t, url, tca, &reader.TLS)
		if err == nil || !strings.Contains(err.Error(), `sending "initialize": Unauthorized`) {
			t.Fatalf("got %v, want the Handler's 401 (client certificate required)", err)
		}
	})
	t.Run("no ConnContext", func(t *testing.T) {
		g, tca := offline(t)
		server := tca.CreateSVID("spiffe://acme.test/server/files", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
		hs := g.Server("127.0.0.1:0", "/mcp", mcpexample.NewServer(), identity.StaticCertificate{Cert: &server.TLS}, nil)
		hs.ConnContext = nil // only a cache: decisions stay the same
		url := serveGuarded(t, hs)
		reader := tca.CreateSVID("spiffe://acme.test/client/reporter", testca.WithRoles("reader"))
		cs, err := connectAs(t, url, tca, &reader.TLS)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := call(t, cs, mcpexample.ToolDeleteRecord, map[string]any{"id": "1"}); err == nil || !strings.Contains(err.Error(), mcpauth.DeniedMessage) {
			t.Fatalf("a denied call without ConnContext: %v", err)
		}
	})
}

// Protocol 2026-07-28 mirrors the method and target in headers for
// intermediaries; a request whose headers disagree with its body is refused
// (the SDK's check, behind the Guard) before anything runs. The SDK speaks
// 2026-07-28 on stateless servers only.
func TestHeadersThatDisagreeWithTheBodyAreRefused(t *testing.T) {
	g, tca := offline(t)
	server := tca.CreateSVID("spiffe://acme.test/server/files", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	url := serveGuarded(t, g.Server("127.0.0.1:0", "/mcp", mcpexample.NewServer(), identity.StaticCertificate{Cert: &server.TLS}, &mcp.StreamableHTTPOptions{Stateless: true}))
	admin := tca.CreateSVID("spiffe://acme.test/client/root", testca.WithRoles("admin"))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: identity.ClientTLSConfig(identity.StaticCertificate{Cert: &admin.TLS}, verifierOf(t, tca), identity.WithServerName("127.0.0.1"))}}
	defer hc.CloseIdleConnections()
	for _, tc := range []struct {
		method, name, body, want string
	}{
		{"tools/call", "search_docs", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_record","arguments":{"id":"1"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			`header mismatch: Mcp-Name header value 'search_docs' does not match body value 'delete_record'`},
		{"tools/list", "", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_record","arguments":{"id":"1"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			`header mismatch: Mcp-Method header value 'tools/list' does not match body value 'tools/call'`},
		{"tools/list", "", `{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}}}`, ""},
		{"", "", `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, `missing required Mcp-Method header`},
	} {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2026-07-28")
		if tc.method != "" {
			req.Header.Set("Mcp-Method", tc.method)
		}
		if tc.name != "" {
			req.Header.Set("Mcp-Name", tc.name)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tc.want == "" { // the control: headers that agree
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"tools":[`) {
				t.Errorf("agreeing headers: got %d %s", resp.StatusCode, b)
			}
			continue
		}
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"code":-32020`) || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: got %d %s, want 400 -32020 %q", tc.body, resp.StatusCode, b, tc.want)
		}
	}
}

// A resource read is authorized per identity: its result is private to the
// caller's cache, whatever the server set, like the lists.
func TestReadResourceIsPrivate(t *testing.T) {
	g, tca := offline(t)
	server := tca.CreateSVID("spiffe://acme.test/server/files", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	srv := mcpexample.NewServer()
	srv.AddResource(&mcp.Resource{URI: "docs://public-note", Name: "note"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "docs://public-note", Text: "hi"}},
			Cacheable: mcp.Cacheable{CacheScope: "public", TTLMs: 60000}}, nil
	})
	url := serveGuarded(t, g.Server("127.0.0.1:0", "/mcp", srv, identity.StaticCertificate{Cert: &server.TLS}, nil))
	reader := tca.CreateSVID("spiffe://acme.test/client/reporter", testca.WithRoles("reader"))
	cs, err := connectAs(t, url, tca, &reader.TLS)
	if err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{mcpexample.ResourceHandbook, "docs://public-note"} {
		res, err := cs.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: uri})
		if err != nil {
			t.Fatal(err)
		}
		if res.CacheScope != "private" || res.TTLMs != 0 {
			t.Errorf("%s: cacheScope %q ttlMs %d, want private and 0", uri, res.CacheScope, res.TTLMs)
		}
	}
}
