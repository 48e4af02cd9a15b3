package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/internal/mcpexample"
)

// TestGatewayRoutesAuditResource: mcpca gateway --config with three routes
// (real processes: serve, apikey create, the gateway, the mcp client).
// audit: sends each route's decisions to its own log (two routes sharing a
// file share one log), every chain verifies; with --token-issuer each
// route is its own protected resource: its RFC 9728 metadata at its own
// path (default identifier https://LISTEN/PATH), and a key for another
// route's resource is refused with the message the user sees.
func TestGatewayRoutesAuditResource(t *testing.T) {
	ca, policy := startKeyedCA(t)
	w := ca.dir
	const resA, resB = "https://gw.acme.test/a/mcp", "https://gw.acme.test/b/mcp"
	keyA, keyB := apiKeyFile(t, w, "bot-a", resA), apiKeyFile(t, w, "bot-b", resB)
	upstream := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return mcpexample.NewServer() },
		&mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(upstream.Close)
	cfg := "routes:\n" +
		"  - {path: /a/mcp, upstream: " + upstream.URL + "/mcp, policy: " + policy + ", audit: a-audit.log, resource: " + resA + "}\n" +
		"  - {path: /b/mcp, upstream: " + upstream.URL + "/mcp, policy: " + policy + ", audit: shared.log, resource: " + resB + "}\n" +
		"  - {path: /c/mcp, upstream: " + upstream.URL + "/mcp, policy: " + policy + ", audit: shared.log}\n"
	if err := os.WriteFile(filepath.Join(w, "gateway.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startServerProc(t, w, mcpcaBin, "gateway", "--config", "gateway.yaml", "--listen", "127.0.0.1:0", "--cert", "files.crt", "--key", "files.key",
		"--root", ca.root, "--token-issuer", ca.url, "--audit", "main-audit.log", "--apikey-refresh", "200ms")
	base := strings.TrimSuffix(gw.mcp, "/a/mcp")
	host := strings.TrimPrefix(base, "https://")

	mcpArgs := func(path, keyFile string, rest ...string) []string {
		return append(rest, "--url", base+path, "--root", ca.root, "--server-id", "spiffe://acme.test/server/files", "--token-file", keyFile)
	}
	ok(t, w, mcpArgs("/a/mcp", keyA, "mcp", "call", "whoami")...)
	ok(t, w, mcpArgs("/b/mcp", keyB, "mcp", "call", "whoami")...)
	fails(t, w, "server answered 401 Unauthorized: invalid_token: the token is for another resource (aud "+resA+"), not "+resB,
		mcpArgs("/b/mcp", keyA, "mcp", "tools")...)
	fails(t, w, "server answered 401 Unauthorized: invalid_token: the token is for another resource (aud "+resB+"), not "+resA,
		mcpArgs("/a/mcp", keyB, "mcp", "tools")...)
	fails(t, w, "server answered 401 Unauthorized: invalid_token: the token is for another resource (aud "+resB+"), not https://"+host+"/c/mcp",
		mcpArgs("/c/mcp", keyB, "mcp", "tools")...)
	// A key for route c's default resource, made now that the port is
	// known: accepted once the gateway has refetched the set (polled with
	// a deadline); its decisions go to shared.log, beside route b's.
	keyC := apiKeyFile(t, w, "bot-c", "https://"+host+"/c/mcp")
	for deadline := time.Now().Add(30 * time.Second); ; {
		r := runIn(t, w, mcpArgs("/c/mcp", keyC, "mcp", "call", "whoami")...)
		if r.code == 0 {
			break
		}
		if !strings.Contains(r.stderr, "apikey: unknown or revoked API key") || time.Now().After(deadline) {
			t.Fatalf("key for route c: %s", r.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Each route's metadata at its own path, naming its own resource.
	pool := x509.NewCertPool()
	rootPEM, _ := os.ReadFile(ca.root)
	pool.AppendCertsFromPEM(rootPEM)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	for path, want := range map[string]string{"/a/mcp": resA, "/b/mcp": resB, "/c/mcp": "https://" + host + "/c/mcp"} {
		resp, err := hc.Get(base + "/.well-known/oauth-protected-resource" + path)
		if err != nil {
			t.Fatal(err)
		}
		var md struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || md.Resource != want || len(md.AuthorizationServers) != 1 || md.AuthorizationServers[0] != ca.url {
			t.Errorf("metadata of %s: %s %+v %v; want resource %s, issuer %s", path, resp.Status, md, err, want, ca.url)
		}
	}

	// Each route's decisions in its log; every chain intact.
	for log, c := range map[string]struct{ in, out []string }{
		"a-audit.log": {[]string{"bot-a"}, []string{"bot-b", "bot-c"}},
		"shared.log":  {[]string{"bot-b", "bot-c"}, []string{"bot-a"}},
	} {
		b, _ := os.ReadFile(filepath.Join(w, log))
		for _, name := range c.in {
			want := `"spiffe_id":"spiffe://acme.test/client/` + name + `","auth":"api-key","roles":["reader"],"method":"tools/call","target":"whoami","decision":"allow"`
			if !strings.Contains(string(b), want) {
				t.Errorf("%s does not hold %s:\n%s", log, want, b)
			}
		}
		for _, name := range c.out {
			if strings.Contains(string(b), `"spiffe_id":"spiffe://acme.test/client/`+name+`"`) {
				t.Errorf("%s holds decisions of %s, of another route:\n%s", log, name, b)
			}
		}
		if r := ok(t, w, "audit", "verify", log); !strings.HasPrefix(r.stdout, "OK: ") || !strings.Contains(r.stdout, "hash chain intact") {
			t.Errorf("audit verify %s: %q", log, r.stdout)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(w, "main-audit.log")); strings.Contains(string(b), `"target":"whoami"`) {
		t.Errorf("--audit's log holds the decisions of routes with their own:\n%s", b)
	}
}
