package mcpauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/testca"
)

// offline is a Guard over an in-memory test CA, for tests without network.
func offline(t *testing.T) (*mcpauth.Guard, *testca.CA) {
	t.Helper()
	tca := testca.NewCA(t, "acme.test")
	b, err := trust.NewBundle([]*x509.Certificate{tca.Root()})
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(trust.NewBundleStore(b), identity.WithTrustDomains("acme.test"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load([]string{starterPolicy})
	if err != nil {
		t.Fatal(err)
	}
	g, err := mcpauth.New(v, set, mcpauth.WithLogger(slogDiscard()))
	if err != nil {
		t.Fatal(err)
	}
	return g, tca
}

func TestHandlerRefusals(t *testing.T) {
	g, tca := offline(t)
	reached := false
	h := g.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	other := testca.NewCA(t, "acme.test").CreateSVID("spiffe://acme.test/client/mallory")
	expired := tca.CreateSVID("spiffe://acme.test/client/old", testca.WithValidity(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)))
	for _, tc := range []struct {
		name   string
		tls    *tls.ConnectionState
		status int
		body   string
	}{
		{"plain HTTP", nil, 401, `{"error":"client certificate required","detail":"connect over TLS with a certificate issued by this server's CA"}`},
		{"no client certificate", &tls.ConnectionState{}, 401, `{"error":"client certificate required"`},
		{"another CA", &tls.ConnectionState{PeerCertificates: other.Chain}, 403, `{"error":"client certificate rejected","detail":"identity: spiffe://acme.test/client/mallory: chain does not verify: x509: certificate signed by unknown authority`},
		{"expired", &tls.ConnectionState{PeerCertificates: expired.Chain}, 403, `"detail":"identity: spiffe://acme.test/client/old: certificate expired`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(listTools))
			req.TLS = tc.tls
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) {
				t.Fatalf("got %d %s, want %d with %s", rec.Code, rec.Body.String(), tc.status, tc.body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if reached {
				t.Fatal("the wrapped handler was reached")
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	set, err := policy.Load([]string{starterPolicy})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := trust.NewBundle([]*x509.Certificate{testca.NewCA(t, "acme.test").Root()})
	v, _ := identity.NewVerifier(trust.NewBundleStore(b), identity.AnyTrustDomain())
	for _, tc := range []struct {
		name string
		err  func() error
		want string
	}{
		{"no verifier", func() error { _, err := mcpauth.New(nil, set); return err }, "mcpauth: a verifier is required"},
		{"no authorizer", func() error { _, err := mcpauth.New(v, nil); return err }, "mcpauth: an authorizer is required"},
		{"bad TTL", func() error { _, err := mcpauth.New(v, set, mcpauth.WithSessionTTL(-time.Second)); return err }, "mcpauth: session TTL must be positive, got -1s"},
		{"bad session limit", func() error { _, err := mcpauth.New(v, set, mcpauth.WithMaxSessions(0)); return err }, "mcpauth: the session limit must be positive, got 0"},
	} {
		if err := tc.err(); err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// A server whose HTTP handler was not wrapped fails closed.
func TestMiddlewareWithoutHandler(t *testing.T) {
	g, _ := offline(t)
	srv := mcpexample.NewServer()
	g.Install(srv)
	ct, st := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctxT(t), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctxT(t), ct, nil)
	if err != nil {
		t.Fatalf("initialize must stay allowed: %v", err)
	}
	defer cs.Close()
	_, err = call(t, cs, mcpexample.ToolSearchDocs, map[string]any{"query": "x"})
	if err == nil || !strings.Contains(err.Error(), mcpauth.DeniedMessage) {
		t.Fatalf("got %v, want %q", err, mcpauth.DeniedMessage)
	}
	if _, err := cs.ListTools(ctxT(t), nil); err == nil || !strings.Contains(err.Error(), mcpauth.DeniedMessage) {
		t.Fatalf("tools/list: got %v", err)
	}
}

// The wrapped handler sees the client's headers as sent, so an
// application's own bearer-token check (here the SDK's) can sit inside the
// Guard; a caller reference forged by the client is replaced.
func TestHandlerLeavesAuthorizationToTheApplication(t *testing.T) {
	g, tca := offline(t)
	g.Install(mcpexample.NewServer())
	alice := tca.CreateSVID("spiffe://acme.test/client/alice")
	verify := func(_ context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		if token != "app-token" {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{UserID: "app-user", Expiration: time.Now().Add(time.Hour)}, nil
	}
	for _, tc := range []struct {
		sent       string
		wantStatus int
	}{{"Bearer app-token", http.StatusOK}, {"Bearer forged", http.StatusUnauthorized}, {"", http.StatusUnauthorized}} {
		var user, ref string
		inner := auth.RequireBearerToken(verify, nil)(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			user = auth.TokenInfoFromContext(r.Context()).UserID
			ref = r.Header.Get("Mcpca-Caller-Ref")
		}))
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(listTools))
		req.TLS = &tls.ConnectionState{PeerCertificates: alice.Chain}
		req.Header.Set("Mcpca-Caller-Ref", "forged-by-the-client")
		if tc.sent != "" {
			req.Header.Set("Authorization", tc.sent)
		}
		rec := httptest.NewRecorder()
		g.Handler(inner).ServeHTTP(rec, req)
		if rec.Code != tc.wantStatus {
			t.Fatalf("Authorization %q: status %d, want %d", tc.sent, rec.Code, tc.wantStatus)
		}
		if tc.wantStatus == http.StatusOK && (user != "app-user" || ref == "" || ref == "forged-by-the-client") {
			t.Fatalf("Authorization %q: user %q, caller ref %q", tc.sent, user, ref)
		}
	}
}
