package mcpauth_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/oauthtest"
	"github.com/mcpca/mcpca/internal/testca"
)

// tokenServer is an example MCP server whose Guard takes certificates of
// tca and tokens of is, deciding with scripts/policies/auth-methods.cedar.
type tokenServer struct {
	url, meta string
	tca       *testca.CA
	is        *oauthtest.Issuer
	guard     *mcpauth.Guard
}

func startTokenServer(t *testing.T, opts ...oauth.Option) *tokenServer {
	t.Helper()
	tca := testca.NewCA(t, "acme.test")
	is := oauthtest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resource := "https://" + ln.Addr().String() + "/mcp"
	rs, err := oauth.New(resource, []oauth.Issuer{{URL: is.URL, TrustDomain: "acme.test"}},
		append([]oauth.Option{oauth.WithHTTPClient(is.Client()), oauth.WithLogger(slogDiscard())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load([]string{"../../scripts/policies/auth-methods.cedar"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := mcpauth.New(verifierOf(t, tca), set, mcpauth.WithLogger(slogDiscard()), mcpauth.WithResourceServer(rs))
	if err != nil {
		t.Fatal(err)
	}
	server := tca.CreateSVID("spiffe://acme.test/server/files", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	hs := g.Server("", "/mcp", mcpexample.NewServer(), identity.StaticCertificate{Cert: &server.TLS}, nil)
	hs.ErrorLog = log.New(io.Discard, "", 0)
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })
	return &tokenServer{url: resource, meta: rs.MetadataURL(), tca: tca, is: is, guard: g}
}

// client returns an HTTP client presenting cert (nil: none) and tok
// (empty: none).
func (s *tokenServer) client(t *testing.T, cert *tls.Certificate, tok string) *http.Client {
	t.Helper()
	cfg := identity.ClientTLSConfig(identity.StaticCertificate{Cert: cert}, verifierOf(t, s.tca), identity.WithServerName("127.0.0.1"))
	if cert == nil {
		cfg.GetClientCertificate = nil
	}
	var rt http.RoundTripper = &http.Transport{TLSClientConfig: cfg}
	if tok != "" {
		rt = withToken{tok, rt}
	}
	hc := &http.Client{Transport: rt}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

type withToken struct {
	tok string
	rt  http.RoundTripper
}

func (w withToken) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+w.tok)
	return w.rt.RoundTrip(r)
}

func (s *tokenServer) connect(t *testing.T, cert *tls.Certificate, tok string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: s.url, HTTPClient: s.client(t, cert, tok), DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func (s *tokenServer) token(t *testing.T, sub string, roles []string, cnf string) string {
	c := s.is.Claims(s.url, sub, time.Now())
	c["roles"] = roles
	if cnf != "" {
		c["cnf"] = map[string]any{"x5t#S256": cnf}
	}
	return s.is.Mint(t, c)
}

// One principal, three ways in: a certificate, a token and a bound token
// for alice (reader, admin) get the same identity and roles, and the
// policy tells them apart by context.auth.
func TestTokensAndCertificatesOnePrincipal(t *testing.T) {
	s := startTokenServer(t)
	alice := s.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader", "admin"))
	roles := []string{"reader", "admin"}
	for _, tc := range []struct {
		name   string
		cert   *tls.Certificate
		tok    string
		delete bool
	}{
		{"mtls", &alice.TLS, "", true},
		{"token", nil, s.token(t, "spiffe://acme.test/client/alice", roles, ""), false},
		{"bound token", &alice.TLS, s.token(t, "spiffe://acme.test/client/alice", roles, oauth.Thumbprint(alice.Leaf.Raw)), true},
		{"unbound token with a certificate", &alice.TLS, s.token(t, "spiffe://acme.test/client/alice", roles, ""), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := s.connect(t, tc.cert, tc.tok)
			if got, err := call(t, cs, mcpexample.ToolWhoAmI, nil); err != nil || got != "spiffe://acme.test/client/alice roles=reader,admin" {
				t.Fatalf("whoami: %q %v", got, err)
			}
			_, err := call(t, cs, mcpexample.ToolDeleteRecord, map[string]any{"id": "1"})
			if tc.delete != (err == nil) {
				t.Fatalf("delete_record: %v, want allowed %v", err, tc.delete)
			}
			if err != nil && !strings.Contains(err.Error(), mcpauth.DeniedMessage) {
				t.Fatalf("delete_record: %v", err)
			}
		})
	}
}

// post sends a ping and returns status, challenge and body.
func postPing(t *testing.T, hc *http.Client, url string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), strings.TrimSpace(string(b))
}

func TestTokenRefusals(t *testing.T) {
	s := startTokenServer(t, oauth.WithRequiredScopes("mcp"))
	alice := s.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	good := s.is.Claims(s.url, "alice", time.Now())
	good["scope"] = "mcp"
	noScope := s.is.Claims(s.url, "alice", time.Now())
	otherAud := s.is.Claims("https://other.test/mcp", "alice", time.Now())
	md := `Bearer resource_metadata="` + s.meta + `"`
	for _, tc := range []struct {
		name            string
		cert            *tls.Certificate
		tok             string
		status          int
		challenge, body string
	}{
		{"neither", nil, "", 401, md + `, scope="mcp"`,
			`{"error":"authentication required","detail":"present a client certificate of this server's CA or an OAuth access token (Authorization: Bearer); the metadata at ` + s.meta + ` names the authorization servers"}`},
		{"another audience", nil, s.is.Mint(t, otherAud), 401,
			md + `, error="invalid_token", error_description="the token is for another resource (aud https://other.test/mcp), not ` + s.url + `", scope="mcp"`,
			`{"error":"invalid_token","detail":"the token is for another resource (aud https://other.test/mcp), not ` + s.url + `"}`},
		{"insufficient scope", nil, s.is.Mint(t, noScope), 403,
			md + `, error="insufficient_scope", error_description="the token lacks scope mcp", scope="mcp"`,
			`{"error":"insufficient_scope","detail":"the token lacks scope mcp"}`},
		{"invalid token with a valid certificate", &alice.TLS, "x.y.z", 401, "", `{"error":"invalid_token"`},
		{"valid", nil, s.is.Mint(t, good), 200, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, challenge, body := postPing(t, s.client(t, tc.cert, tc.tok), s.url)
			if status != tc.status || (tc.challenge != "" && challenge != tc.challenge) || !strings.HasPrefix(body, tc.body) {
				t.Fatalf("got %d\n%s\n%s\nwant %d\n%s\n%s", status, challenge, body, tc.status, tc.challenge, tc.body)
			}
		})
	}
}

func TestMetadataServed(t *testing.T) {
	s := startTokenServer(t)
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, err := s.client(t, nil, "").Get(strings.TrimSuffix(s.url, "/mcp") + path)
		if err != nil {
			t.Fatal(err)
		}
		var m oauth.Metadata
		err = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || m.Resource != s.url || m.AuthorizationServers[0] != s.is.URL || m.BearerMethodsSupported[0] != "header" {
			t.Fatalf("%s: %d %+v %v", path, resp.StatusCode, m, err)
		}
	}
}

// A Guard without a resource server still requires a certificate at the
// TLS layer; one with it only requests one, and a certificate that is
// presented must verify.
func TestTLSRequestsCertificateWithTokens(t *testing.T) {
	s := startTokenServer(t)
	mallory := testca.NewCA(t, "acme.test").CreateSVID("spiffe://acme.test/client/mallory")
	handshakeFails(t, s.client(t, &mallory.TLS, ""), s.url)
	if cfg := s.guard.TLSConfig(identity.StaticCertificate{}); cfg.ClientAuth != tls.RequestClientCert {
		t.Fatalf("ClientAuth %v, want RequestClientCert", cfg.ClientAuth)
	}
	g, _ := offline(t)
	if cfg := g.TLSConfig(identity.StaticCertificate{}); cfg.ClientAuth != tls.RequireAnyClientCert {
		t.Fatalf("mTLS-only ClientAuth %v, want RequireAnyClientCert", cfg.ClientAuth)
	}
}

func handshakeFails(t *testing.T, hc *http.Client, url string) {
	t.Helper()
	resp, err := hc.Post(url, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a certificate of another CA: %s, want a failed handshake", resp.Status)
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a certificate of another CA: %v, want a failed handshake", err)
	}
}
