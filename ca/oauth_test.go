package ca_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.step.sm/crypto/pemutil"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
)

const testResource = "https://mcp.example.com/mcp"

// oauthClient is an HTTPS client of the test CA presenting cert (none when nil).
func oauthClient(c *catest.CA, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: c.Roots, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
}

type oauthAnswer struct {
	status int
	header http.Header
	body   map[string]any
}

func postToken(t testing.TB, hc *http.Client, c *catest.CA, contentType, body string) oauthAnswer {
	t.Helper()
	resp, err := hc.Post(c.URL+ca.TokenPath, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := oauthAnswer{status: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(b, &a.body); err != nil {
		t.Fatalf("answer %d is not JSON: %s", resp.StatusCode, b)
	}
	return a
}

func form(kv ...string) string {
	v := url.Values{}
	for i := 0; i < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

const formType = "application/x-www-form-urlencoded"

func getJSON(t *testing.T, hc *http.Client, u string, out any) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

func TestTokenEndpointIssuesCertificateBoundToken(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", Roles: []string{"reader", "writer"}, Attributes: map[string]string{"team": "a"}, TTL: time.Hour})
	hc := oauthClient(c, &cert)

	// RFC 8414 metadata names the endpoints.
	var md map[string]any
	getJSON(t, oauthClient(c, nil), c.URL+"/.well-known/oauth-authorization-server", &md)
	for k, want := range map[string]any{
		"issuer": c.URL, "token_endpoint": c.URL + "/1.0/oauth/token", "jwks_uri": c.URL + "/1.0/oauth/jwks",
		"tls_client_certificate_bound_access_tokens": true,
		"mcpca_apikeys_uri":                          c.URL + "/1.0/apikeys", "mcpca_trust_domain": "acme.test",
	} {
		if md[k] != want {
			t.Errorf("metadata %s = %v, want %v", k, md[k], want)
		}
	}
	if g, _ := json.Marshal(md["grant_types_supported"]); string(g) != `["client_credentials"]` {
		t.Errorf("grant_types_supported = %s", g)
	}
	if g, _ := json.Marshal(md["token_endpoint_auth_methods_supported"]); string(g) != `["tls_client_auth"]` {
		t.Errorf("token_endpoint_auth_methods_supported = %s", g)
	}

	a := postToken(t, hc, c, formType, form("grant_type", "client_credentials", "resource", testResource, "scope", "reader"))
	if a.status != http.StatusOK {
		t.Fatalf("token endpoint answered %d: %v", a.status, a.body)
	}
	if a.body["token_type"] != "Bearer" || a.body["expires_in"] != float64(300) || a.body["scope"] != "reader" {
		t.Fatalf("answer %v", a.body)
	}
	if a.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", a.header.Get("Cache-Control"))
	}

	// The token verifies against the JWKS (go-jose), typ at+jwt.
	var jwks jose.JSONWebKeySet
	getJSON(t, oauthClient(c, nil), md["jwks_uri"].(string), &jwks)
	tok := a.body["access_token"].(string)
	obj, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := obj.Signatures[0].Protected
	if h.ExtraHeaders[jose.HeaderType] != "at+jwt" {
		t.Errorf("typ %v", h.ExtraHeaders[jose.HeaderType])
	}
	keys := jwks.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("JWKS has no key %q: %+v", h.KeyID, jwks)
	}
	payload, err := obj.Verify(keys[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	var cl ca.AccessTokenClaims
	if err := json.Unmarshal(payload, &cl); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Leaf.Raw)
	sid := "spiffe://acme.test/client/reporter"
	switch {
	case cl.Issuer != c.URL, cl.Subject != sid, cl.ClientID != sid, cl.Audience != testResource:
		t.Errorf("claims %+v", cl)
	case cl.Expiry-cl.IssuedAt != 300, cl.ID == "", cl.Scope != "reader":
		t.Errorf("claims %+v", cl)
	case strings.Join(cl.Roles, ",") != "reader,writer", cl.Attributes["team"] != "a":
		t.Errorf("roles %v attributes %v", cl.Roles, cl.Attributes)
	case cl.Cnf.X5tS256 != base64.RawURLEncoding.EncodeToString(sum[:]):
		t.Errorf("cnf %q is not the certificate's thumbprint", cl.Cnf.X5tS256)
	}
	// A second key would break here: tampering with the payload fails.
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(payload, []byte("reporter"), []byte("reporteR"), 1)) + "." + parts[2]
	if o, err := jose.ParseSignedCompact(forged, []jose.SignatureAlgorithm{jose.ES256}); err == nil {
		if _, err := o.Verify(keys[0].Key); err == nil {
			t.Fatal("a forged token verified")
		}
	}
}

func TestTokenEndpointRefusals(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", Roles: []string{"reader"}, TTL: time.Hour})
	hc := oauthClient(c, &cert)
	ok := form("grant_type", "client_credentials", "resource", testResource)
	for _, tc := range []struct {
		name        string
		hc          *http.Client
		ctype, body string
		status      int
		code, desc  string
	}{
		{"no client certificate", oauthClient(c, nil), formType, ok, 401, "invalid_client", "no client certificate: authenticate with your mcpca certificate over mTLS (tls_client_auth)"},
		{"missing resource", hc, formType, form("grant_type", "client_credentials"), 400, "invalid_target", "missing resource: name the resource server the token is for (RFC 8707), e.g. resource=https://mcp.example.com/mcp"},
		{"http resource", hc, formType, form("grant_type", "client_credentials", "resource", "http://mcp.example.com/mcp"), 400, "invalid_target", `resource "http://mcp.example.com/mcp" is not an absolute https URL without fragment (RFC 8707)`},
		{"relative resource", hc, formType, form("grant_type", "client_credentials", "resource", "/mcp"), 400, "invalid_target", `resource "/mcp" is not an absolute https URL without fragment (RFC 8707)`},
		{"two resources", hc, formType, form("grant_type", "client_credentials", "resource", testResource, "resource", "https://b.example/mcp"), 400, "invalid_target", "2 resources: this server issues a token for one resource; ask once per resource"},
		{"wrong grant type", hc, formType, form("grant_type", "password", "resource", testResource), 400, "unsupported_grant_type", `grant_type "password" is not supported: this server grants client_credentials only`},
		{"missing grant type", hc, formType, form("resource", testResource), 400, "invalid_request", "missing grant_type: this server grants client_credentials"},
		{"JSON body", hc, "application/json", `{"grant_type":"client_credentials"}`, 400, "invalid_request", "the token request must be application/x-www-form-urlencoded (RFC 6749 §4.4.2)"},
		{"repeated parameter", hc, formType, ok + "&grant_type=client_credentials", 400, "invalid_request", `parameter "grant_type" is repeated (RFC 6749 §3.2)`},
		{"client secret", hc, formType, ok + "&client_secret=x", 401, "invalid_client", "this server authenticates clients by their mcpca certificate over mTLS only (tls_client_auth): send no secret or assertion"},
		{"another client_id", hc, formType, ok + "&client_id=spiffe%3A%2F%2Facme.test%2Fclient%2Fceo", 401, "invalid_client", `client_id "spiffe://acme.test/client/ceo" is not the client certificate's SPIFFE ID spiffe://acme.test/client/reporter`},
		{"scope beyond the roles", hc, formType, ok + "&scope=admin", 400, "invalid_scope", `scope "admin" is not one of the certificate's roles (reader): a token's scopes are its roles`},
		{"body too large", hc, formType, ok + "&x=" + strings.Repeat("a", 9000), 413, "invalid_request", "token request body exceeds the limit of 8192 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := postToken(t, tc.hc, c, tc.ctype, tc.body)
			if a.status != tc.status || a.body["error"] != tc.code || a.body["error_description"] != tc.desc {
				t.Fatalf("got %d %v, want %d %s %q", a.status, a.body, tc.status, tc.code, tc.desc)
			}
			if _, ok := a.body["access_token"]; ok {
				t.Fatal("a refusal carries a token")
			}
		})
	}

	// GET is refused with the RFC 6749 shape too.
	resp, err := hc.Get(c.URL + ca.TokenPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET token endpoint: %s", resp.Status)
	}

	// A revoked certificate gets no token.
	if err := c.Client.RevokeSelf(context.Background(), cert, "test"); err != nil {
		t.Fatal(err)
	}
	a := postToken(t, oauthClient(c, &cert), c, formType, ok)
	want := "client certificate (serial " + cert.Leaf.SerialNumber.String() + ") is revoked"
	if a.status != 401 || a.body["error"] != "invalid_client" || a.body["error_description"] != want {
		t.Fatalf("revoked: %d %v", a.status, a.body)
	}

	// Nor does a certificate of a revoked identity.
	other := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "writer", TTL: time.Hour})
	tok, err := ca.MintRevokeToken(c.Dir, c.Password, "", "spiffe://acme.test/client/writer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RevokeIdentity(context.Background(), "spiffe://acme.test/client/writer", tok, "gone"); err != nil {
		t.Fatal(err)
	}
	a = postToken(t, oauthClient(c, &other), c, formType, ok)
	if a.status != 401 || a.body["error"] != "invalid_client" || !strings.Contains(a.body["error_description"].(string), "is revoked") {
		t.Fatalf("revoked identity: %d %v", a.status, a.body)
	}
}

func TestTokenLifetimeBoundByCertificateAndExpiredRefused(t *testing.T) {
	clk := clock.NewFake(time.Now())
	c := catest.Start(t, catest.Options{CAOptions: []ca.Option{ca.WithClock(clk)}})
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})
	ok := form("grant_type", "client_credentials", "resource", testResource)

	clk.Set(cert.Leaf.NotAfter.Add(-2 * time.Minute))
	a := postToken(t, oauthClient(c, &cert), c, formType, ok)
	if a.status != 200 || a.body["expires_in"].(float64) > 120 {
		t.Fatalf("near expiry: %d %v", a.status, a.body)
	}
	clk.Set(cert.Leaf.NotAfter.Add(time.Minute))
	a = postToken(t, oauthClient(c, &cert), c, formType, ok)
	if a.status != 401 || a.body["error"] != "invalid_client" || !strings.Contains(a.body["error_description"].(string), "certificate expired at") {
		t.Fatalf("expired: %d %v", a.status, a.body)
	}
}

func TestTokenEndpointLimitsFailuresPerSource(t *testing.T) {
	clk := clock.NewFake(time.Now())
	c := catest.Start(t, catest.Options{CAOptions: []ca.Option{ca.WithClock(clk), ca.WithTokenFailureLimit(1, 3)}})
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})
	hc := oauthClient(c, &cert)
	bad := form("grant_type", "client_credentials")
	for i := 0; i < 3; i++ {
		if a := postToken(t, hc, c, formType, bad); a.status != 400 {
			t.Fatalf("failure %d: %d %v", i, a.status, a.body)
		}
	}
	good := form("grant_type", "client_credentials", "resource", testResource)
	a := postToken(t, hc, c, formType, good)
	if a.status != 429 || a.body["error_description"] != "too many failed token requests from 127.0.0.1: try again later" || a.header.Get("Retry-After") != "1" {
		t.Fatalf("limited: %d %v", a.status, a.body)
	}
	clk.Advance(time.Second)
	if a := postToken(t, hc, c, formType, good); a.status != 200 {
		t.Fatalf("after the budget refilled: %d %v", a.status, a.body)
	}
}

// TestTokenSigningKeyAtRest: Init writes the token signing key encrypted
// (0600); a CA directory made before it gets one at its first Open, and the
// JWKS serves the same key across restarts.
func TestTokenSigningKeyAtRest(t *testing.T) {
	dir := t.TempDir() + "/pki"
	pw := []byte("test-password-at-rest")
	if _, err := ca.Init(ca.InitConfig{Dir: dir, Name: "T", TrustDomain: "acme.test", Address: "127.0.0.1:9443", Password: pw}); err != nil {
		t.Fatal(err)
	}
	path := ca.Layout{Dir: dir}.TokenSigningKey()
	check := func() []byte {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("token signing key: %v %v", st, err)
		}
		b, _ := os.ReadFile(path)
		if !bytes.Contains(b, []byte("BEGIN ENCRYPTED PRIVATE KEY")) {
			t.Fatalf("token signing key is not encrypted:\n%s", b)
		}
		if _, err := pemutil.Read(path); err == nil {
			t.Fatal("the token signing key reads without the password")
		}
		return b
	}
	first := check()
	open := func() {
		t.Helper()
		s, err := ca.Open(dir, pw, ca.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	open()
	if !bytes.Equal(check(), first) {
		t.Fatal("Open replaced an existing token signing key")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	open()
	if bytes.Equal(check(), first) {
		t.Fatal("no new key after removal")
	}
}
