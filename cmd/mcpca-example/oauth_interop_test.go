package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/internal/nodetest"
	"github.com/mcpca/mcpca/internal/oauthtest"
)

// authServers are the two oidc-provider issuers of scripts/interop-oauth.
type authServers struct {
	Issuer string `json:"issuer"`
	Other  string `json:"other"`
}

// startAuthServers runs scripts/interop-oauth/as.mjs with a TLS
// certificate of c and returns its issuers.
func startAuthServers(t *testing.T, c *catest.CA, work, node, dir string) authServers {
	t.Helper()
	asCert := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "as", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	cf, kf, root := filepath.Join(dir, "as.crt"), filepath.Join(dir, "as.key"), filepath.Join(dir, "as-root.crt")
	writePair(t, asCert, cf, kf)
	if err := os.WriteFile(root, pemCert(c.Root), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, "as.mjs")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "TLS_CERT="+cf, "TLS_KEY="+kf, "CA="+root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("oidc-provider stderr:\n%s", stderr.String())
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("oidc-provider did not start: %v\n%s", err, stderr.String())
	}
	var as authServers
	if err := json.Unmarshal([]byte(line), &as); err != nil {
		t.Fatalf("oidc-provider said %q: %v", line, err)
	}
	return as
}

func pemCert(c *x509.Certificate) []byte {
	return []byte("-----BEGIN CERTIFICATE-----\n" + base64.StdEncoding.EncodeToString(c.Raw) + "\n-----END CERTIFICATE-----\n")
}

// tlsClient trusts c's root and presents cert (nil: none).
func tlsClient(c *catest.CA, cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(c.Root)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: time.Minute}
}

// clientCredentials gets an access token for resource from issuer with
// the client credentials grant: client_secret_basic when secret is set,
// else RFC 8705 tls_client_auth with hc's certificate.
func clientCredentials(t *testing.T, hc *http.Client, issuer, clientID, secret, resource string) string {
	t.Helper()
	resp, err := hc.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		TokenEndpoint string `json:"token_endpoint"`
		MTLSAliases   struct {
			TokenEndpoint string `json:"token_endpoint"`
		} `json:"mtls_endpoint_aliases"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resource}, "scope": {"mcp"}}
	endpoint := meta.TokenEndpoint
	if secret == "" {
		form.Set("client_id", clientID)
		if meta.MTLSAliases.TokenEndpoint != "" {
			endpoint = meta.MTLSAliases.TokenEndpoint
		}
	}
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(clientID, secret)
	}
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &tr); err != nil || resp.StatusCode != 200 || tr.AccessToken == "" {
		t.Fatalf("token endpoint: %s %s", resp.Status, body)
	}
	return tr.AccessToken
}

func jwtPart(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// bearer adds a token to every request.
type bearer struct {
	tok string
	rt  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return b.rt.RoundTrip(r)
}

// post sends one JSON-RPC ping with tok (none when empty) and returns the
// status, the WWW-Authenticate header and the body.
func post(t *testing.T, hc *http.Client, u, tok string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(body)
}

// TestInteropOAuth checks mcpca's resource server against parties no one
// at mcpca wrote: oidc-provider (npm, a certified OpenID provider) issues
// the tokens, by the client credentials grant with a secret and with an
// mcpca certificate (RFC 8705 tls_client_auth, tokens bound to it), and
// the TypeScript MCP SDK's own client-credentials support finds the
// server's metadata from its 401 and calls tools. Skips without node (or
// fails under MCPCA_REQUIRE_NODE=1). scripts/interop-oauth/run.sh runs it.
func TestInteropOAuth(t *testing.T) {
	work, node := nodetest.Install(t, "interop-oauth", filepath.Join("..", "..", "scripts", "interop-oauth"), "as.mjs", "client.mjs")
	c := catest.Start(t, catest.Options{})
	dir := t.TempDir()
	as := startAuthServers(t, c, work, node, dir)
	e := startExampleWith(t, c, "--token-issuer", as.Issuer+"=acme.test")
	resource := "https://" + e.addr + "/mcp"
	anon := tlsClient(c, nil)
	ctx := context.Background()

	// No credentials: 401 and the challenge that names the metadata.
	metaURL := "https://" + e.addr + "/.well-known/oauth-protected-resource/mcp"
	status, challenge, _ := post(t, anon, resource, "")
	if status != 401 || challenge != `Bearer resource_metadata="`+metaURL+`"` {
		t.Fatalf("no credentials: %d %q", status, challenge)
	}
	resp, err := anon.Get(metaURL)
	if err != nil {
		t.Fatal(err)
	}
	var meta oauth.Metadata
	_ = json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta.Resource != resource || len(meta.AuthorizationServers) != 1 || meta.AuthorizationServers[0] != as.Issuer || !meta.TLSClientCertificateBoundAccessTokens {
		t.Fatalf("metadata: %+v", meta)
	}

	// A token of the client credentials grant (client secret) calls tools
	// as the principal its sub names, with its roles.
	tok := clientCredentials(t, anon, as.Issuer, "reader-bot", "reader-bot-secret", resource)
	if h := jwtPart(t, tok, 0); h["typ"] != "at+jwt" || h["alg"] != "ES256" {
		t.Fatalf("oidc-provider's token header: %v", h)
	}
	hc := tlsClient(c, nil)
	hc.Transport = bearer{tok, hc.Transport}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: resource, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := whoami(t, cs); got != "spiffe://acme.test/client/reader-bot roles=reader,mcp" {
		t.Errorf("whoami with a token: %q", got)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "delete_record", Arguments: map[string]any{"id": "1"}}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("delete_record as reader-bot: %v", err)
	}
	cs.Close()

	// Refusals: each 401 with error="invalid_token" and the metadata.
	forged := oauthtest.NewKey(t)
	h, claims := jwtPart(t, tok, 0), jwtPart(t, tok, 1)
	resign := func(kid string) string {
		return oauthtest.Sign(t, forged, jose.ES256, map[jose.HeaderKey]any{"kid": kid, "typ": "at+jwt"}, claims)
	}
	for _, tc := range []struct{ name, tok, want string }{
		{"another audience", clientCredentials(t, anon, as.Issuer, "reader-bot", "reader-bot-secret", "https://other.test/mcp"),
			"the token is for another resource (aud https://other.test/mcp)"},
		{"another issuer", clientCredentials(t, anon, as.Other, "reader-bot", "reader-bot-secret", resource),
			`issuer '` + as.Other + `' is not trusted here`},
		{"unsigned", oauthtest.Unsigned(t, claims), "not a signed JWT with an accepted algorithm"},
		{"wrongly signed", resign(h["kid"].(string)), "signature does not verify with the key of issuer " + as.Issuer},
		{"re-signed with a new kid", resign("rotated-" + h["kid"].(string)), "has no key 'rotated-"},
	} {
		status, challenge, body := post(t, anon, resource, tc.tok)
		if status != 401 || !strings.HasPrefix(challenge, `Bearer resource_metadata="`+metaURL+`", error="invalid_token", error_description="`) || !strings.Contains(challenge, tc.want) {
			t.Errorf("%s: %d %q %s, want 401 invalid_token %q", tc.name, status, challenge, body, tc.want)
		}
	}

	// Expired: the same token at a resource server whose clock is past
	// its exp (oidc-provider's tokens live 10 minutes).
	clk := clock.NewFake(time.Now())
	rs, err := oauth.New(resource, []oauth.Issuer{{URL: as.Issuer, TrustDomain: "acme.test"}}, oauth.WithClock(clk),
		oauth.WithHTTPClient(anon), oauth.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := rs.Verify(ctx, tok, nil); err != nil {
		t.Fatalf("the token before it expires: %v", err)
	}
	clk.Advance(11 * time.Minute)
	var oe *oauth.Error
	if _, _, err := rs.Verify(ctx, tok, nil); !errors.As(err, &oe) || oe.Status() != 401 || !strings.Contains(err.Error(), "invalid_token: the token expired at") ||
		!strings.Contains(rs.Challenge(err), `error="invalid_token"`) {
		t.Errorf("expired: %v", err)
	}

	// Opaque tokens, introspected (RFC 7662) by the resource server as the
	// client mcp-server; believed no longer than they live.
	opaque := clientCredentials(t, anon, as.Issuer, "opaque-bot", "opaque-bot-secret", resource)
	if strings.Count(opaque, ".") == 2 {
		t.Fatalf("oidc-provider gave opaque-bot a JWT")
	}
	iclk := clock.NewFake(time.Now())
	irs, err := oauth.New(resource, []oauth.Issuer{{URL: as.Issuer, TrustDomain: "acme.test"}}, oauth.WithClock(iclk),
		oauth.WithHTTPClient(anon), oauth.WithLogger(slog.New(slog.DiscardHandler)),
		oauth.WithIntrospection(as.Issuer, "mcp-server", "mcp-server-secret", 0))
	if err != nil {
		t.Fatal(err)
	}
	if ot, _, err := irs.Verify(ctx, opaque, nil); err != nil || ot.Identity.ID.String() != "spiffe://acme.test/client/opaque-bot" || !ot.Identity.HasRole("reader") {
		t.Errorf("an introspected opaque token: %+v %v", ot, err)
	}
	if _, _, err := irs.Verify(ctx, "made-up-opaque-token", nil); err == nil || !strings.Contains(err.Error(), "says the token is not active") {
		t.Errorf("an opaque token oidc-provider never issued: %v", err)
	}
	iclk.Advance(11 * time.Minute)
	if _, _, err := irs.Verify(ctx, opaque, nil); err == nil || !strings.Contains(err.Error(), "invalid_token: the token expired at") {
		t.Errorf("an expired opaque token: %v", err)
	}

	// The same from mcpca-example's flags (--token-introspection, as the
	// client mcp-server with its secret in a file), at a server whose
	// resource is the one the token is for; without them, refused.
	secret := filepath.Join(dir, "introspection.secret")
	if err := os.WriteFile(secret, []byte("mcp-server-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ie := startExampleWith(t, c, "--token-issuer", as.Issuer+"=acme.test", "--resource", resource,
		"--token-introspection", as.Issuer, "--introspection-client-id", "mcp-server", "--introspection-secret-file", secret)
	if status, _, body := post(t, anon, "https://"+ie.addr+"/mcp", opaque); status != 200 {
		t.Errorf("an opaque token at --token-introspection: %d %s", status, body)
	}
	if status, challenge, _ := post(t, anon, "https://"+ie.addr+"/mcp", "made-up-opaque-token"); status != 401 ||
		!strings.Contains(challenge, `error="invalid_token", error_description="issuer `+as.Issuer+` says the token is not active"`) {
		t.Errorf("a made-up opaque token at --token-introspection: %d %s", status, challenge)
	}
	if status, challenge, _ := post(t, anon, resource, opaque); status != 401 || !strings.Contains(challenge, `error_description="not a JWT access token"`) {
		t.Errorf("an opaque token without --token-introspection: %d %s", status, challenge)
	}

	// Certificate-bound tokens: alice authenticates to oidc-provider with
	// her mcpca certificate and gets a token bound to it; it works with
	// that certificate only.
	alice := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "alice", Roles: []string{"reader"}})
	bob := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "bob", Roles: []string{"reader"}})
	bound := clientCredentials(t, tlsClient(c, &alice), as.Issuer, "alice", "", resource)
	leaf, _ := x509.ParseCertificate(alice.Certificate[0])
	if cnf, _ := jwtPart(t, bound, 1)["cnf"].(map[string]any); cnf["x5t#S256"] != oauth.Thumbprint(leaf.Raw) {
		t.Fatalf("oidc-provider's token is not bound to alice's certificate: cnf %v", cnf)
	}
	ac := tlsClient(c, &alice)
	ac.Transport = bearer{bound, ac.Transport}
	cs, err = mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: resource, HTTPClient: ac, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := whoami(t, cs); got != "spiffe://acme.test/client/alice roles=reader,admin,mcp" {
		t.Errorf("whoami with a bound token: %q", got)
	}
	cs.Close()
	for _, tc := range []struct {
		name string
		hc   *http.Client
		want string
	}{
		{"no certificate", anon, "the token is bound to a client certificate (cnf.x5t#S256): present that certificate"},
		{"another certificate", tlsClient(c, &bob), "the token is bound to another client certificate than the one presented"},
	} {
		status, challenge, _ := post(t, tc.hc, resource, bound)
		if status != 401 || !strings.Contains(challenge, `error="invalid_token"`) || !strings.Contains(challenge, tc.want) {
			t.Errorf("bound token, %s: %d %q", tc.name, status, challenge)
		}
	}

	// A server that requires a scope oidc-provider did not grant: 403
	// insufficient_scope, naming the scope.
	scoped := startExampleWith(t, c, "--token-issuer", as.Issuer+"=acme.test", "--token-scope", "mcp:admin")
	sres := "https://" + scoped.addr + "/mcp"
	stok := clientCredentials(t, anon, as.Issuer, "reader-bot", "reader-bot-secret", sres)
	status, challenge, body := post(t, anon, sres, stok)
	if status != 403 || challenge != `Bearer resource_metadata="https://`+scoped.addr+`/.well-known/oauth-protected-resource/mcp", error="insufficient_scope", error_description="the token lacks scope mcp:admin", scope="mcp:admin"` {
		t.Errorf("insufficient scope: %d %q %s", status, challenge, body)
	}

	// The TypeScript SDK's own OAuth client: from the 401 to the tools.
	nctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(nctx, node, "client.mjs")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "MCP_URL="+resource, "CLIENT_ID=reader-bot", "CLIENT_SECRET=reader-bot-secret", "ISSUER="+as.Issuer,
		"NODE_EXTRA_CA_CERTS="+filepath.Join(dir, "as-root.crt"))
	out, err := cmd.CombinedOutput()
	t.Logf("node client.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the TypeScript SDK client failed: %v", err)
	}
	for _, want := range []string{
		`ok unauthenticated: 401 Bearer resource_metadata="` + metaURL + `"`,
		"ok connected: server mcpca-example",
		"ok token: iss " + as.Issuer + " aud " + resource + " sub reader-bot scope mcp",
		"ok tools/call whoami: spiffe://acme.test/client/reader-bot roles=reader,mcp",
		"ok tools/call delete_record: denied (-32010",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the TypeScript client's output lacks %q", want)
		}
	}
}

func whoami(t *testing.T, cs *mcp.ClientSession) string {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Content[0].(*mcp.TextContent).Text
}
