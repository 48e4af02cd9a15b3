package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/internal/mcpexample"
)

var (
	exampleOnce sync.Once
	exampleBin  string
	exampleErr  error
)

// mcpcaExampleBin builds cmd/mcpca-example once, next to mcpcaBin.
func mcpcaExampleBin(t *testing.T) string {
	t.Helper()
	bin, err := buildExample()
	if err != nil {
		t.Fatalf("building mcpca-example: %v\n%s", err, bin)
	}
	return bin
}

// proc is a server process a test started, with its JSON log.
type proc struct {
	cmd  *exec.Cmd
	logs *syncBuf
	mcp  string // the "mcp" URL of its "serving" line
}

// startServerProc starts bin with args in dir and waits for its "serving"
// log line; the process is interrupted when the test ends.
func startServerProc(t *testing.T, dir, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), logs: &syncBuf{mu: make(chanMutex, 1)}}
	p.cmd.Dir = dir
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			var l struct{ Msg, MCP string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" {
				p.mcp = l.MCP
				return p
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited: %s", filepath.Base(bin), p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not serving: %s", filepath.Base(bin), p.logs.String())
		}
	}
}

// TestCAAPIKeysAtServers: mcpca-example and mcpca gateway started with
// --token-issuer naming the CA take the CA's API keys (real processes: serve,
// apikey create/revoke, the servers, the mcp client): a key for the server
// is the principal spiffe://acme.test/client/NAME with its roles and
// context.auth "api-key"; a key for another audience is refused; a revoked
// key is refused once the servers refetch the set (--apikey-refresh, shortened
// here to 200ms; polled with a deadline, not slept on); a source that keeps
// failing gets 429 with Retry-After, and the log names it without the key.
func TestCAAPIKeysAtServers(t *testing.T) {
	ca, policy := startKeyedCA(t)
	w := ca.dir
	const exRes, gwRes = "https://files.acme.test/mcp", "https://gateway.acme.test/mcp"
	exKey, gwKey := apiKeyFile(t, w, "ex-bot", exRes), apiKeyFile(t, w, "gw-bot", gwRes)

	// Refusals at start: the CA's trust domain is the CA's; an issuer that
	// cannot be asked whether it is a CA stops the start, as a CRL does;
	// API keys come from one CA.
	other := startServedCA(t)
	r1, _ := os.ReadFile(ca.root)
	r2, _ := os.ReadFile(other.root)
	if err := os.WriteFile(filepath.Join(w, "both.crt"), append(r1, r2...), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		issuers []string
		want    string
	}{
		{[]string{ca.url + "=other.test"}, "mcpca-example: --token-issuer " + ca.url + "=other.test: the CA there speaks for trust domain acme.test"},
		{[]string{"https://127.0.0.1:1"}, "mcpca-example: --token-issuer https://127.0.0.1:1: cannot read its metadata (RFC 8414): Get \"https://127.0.0.1:1/.well-known/oauth-authorization-server\": dial tcp 127.0.0.1:1: connect: connection refused"},
		{[]string{ca.url, other.url}, "mcpca-example: --token-issuer " + other.url + ": a second mcpca CA; API keys are taken from one CA only"},
	} {
		args := []string{"--listen", "127.0.0.1:0", "--cert", "files.crt", "--key", "files.key", "--root", "both.crt", "--policy", policy}
		for _, is := range c.issuers {
			args = append(args, "--token-issuer", is)
		}
		cmd := exec.Command(mcpcaExampleBin(t), args...)
		cmd.Dir = w
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n") // the logs, then the error
		if err == nil || lines[len(lines)-1] != c.want {
			t.Errorf("--token-issuer %v: %v\n%s\nwant %s", c.issuers, err, out, c.want)
		}
	}

	common := []string{"--listen", "127.0.0.1:0", "--cert", "files.crt", "--key", "files.key", "--root", ca.root, "--policy", policy,
		"--token-issuer", ca.url, "--apikey-refresh", "200ms"}
	ex := startServerProc(t, w, mcpcaExampleBin(t), append(common, "--resource", exRes, "--stateless", "--audit", "audit.log")...)
	upstream := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return mcpexample.NewServer() },
		&mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(upstream.Close)
	gw := startServerProc(t, w, mcpcaBin, append([]string{"gateway", "--upstream", upstream.URL + "/mcp", "--resource", gwRes, "--audit", "gw-audit.log"}, common...)...)
	for _, p := range []*proc{ex, gw} {
		if !strings.Contains(p.logs.String(), `"msg":"accepting the API keys of the CA","issuer":"`+ca.url+`","trust_domain":"acme.test","refresh":"200ms"`) {
			t.Errorf("no line saying the CA's API keys are taken:\n%s", p.logs.String())
		}
	}

	mcpArgs := func(p *proc, keyFile string, rest ...string) []string {
		return append(rest, "--url", p.mcp, "--root", ca.root, "--server-id", "spiffe://acme.test/server/files", "--token-file", keyFile)
	}
	for _, c := range []struct {
		p             *proc
		good, other   string
		res, otherRes string
	}{{ex, exKey, gwKey, exRes, gwRes}, {gw, gwKey, exKey, gwRes, exRes}} {
		name := strings.TrimSuffix(filepath.Base(c.good), ".key")
		// (The gateway's upstream does not authenticate: it says anonymous;
		// the gateway's audit log says who called.)
		out := ok(t, w, mcpArgs(c.p, c.good, "mcp", "call", "whoami")...).stdout
		if want := "spiffe://acme.test/client/" + name + " roles=reader"; c.p == ex && strings.TrimSpace(out) != want {
			t.Errorf("whoami with API key %s: %q, want %q", name, out, want)
		}
		// The policy forbids API keys every tool that writes.
		fails(t, w, "mcpca: calling delete_record: permission denied", mcpArgs(c.p, c.good, "mcp", "call", "delete_record", "--arg", "id=1")...)
		fails(t, w, "server answered 401 Unauthorized: invalid_token: the token is for another resource (aud "+c.otherRes+"), not "+c.res,
			mcpArgs(c.p, c.other, "mcp", "tools")...)
	}
	for log, name := range map[string]string{"audit.log": "ex-bot", "gw-audit.log": "gw-bot"} {
		want := `"spiffe_id":"spiffe://acme.test/client/` + name + `","auth":"api-key","roles":["reader"],"method":"tools/call","target":"whoami","decision":"allow"`
		if b, _ := os.ReadFile(filepath.Join(w, log)); !strings.Contains(string(b), want) {
			t.Errorf("%s does not hold %s:\n%s", log, want, b)
		}
	}

	// Revocation: each server refuses the key once it has refetched the set.
	ok(t, w, "apikey", "revoke", "ex-bot", "--dir", "pki")
	ok(t, w, "apikey", "revoke", "gw-bot", "--dir", "pki")
	revoked := time.Now()
	for _, c := range []struct {
		p   *proc
		key string
	}{{ex, exKey}, {gw, gwKey}} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			// A good key's success counts against no budget; the first
			// refusal ends the loop.
			r := runIn(t, w, mcpArgs(c.p, c.key, "mcp", "tools")...)
			if r.code != 0 {
				if !strings.Contains(r.stderr, "server answered 401 Unauthorized: invalid_token: apikey: unknown or revoked API key") {
					t.Fatalf("revoked key: %s", r.stderr)
				}
				t.Logf("%s refused the revoked key %v after the revocation (bound: --apikey-refresh 200ms + one fetch)", filepath.Base(c.p.cmd.Path), time.Since(revoked).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the revoked key is still accepted: %s", c.p.logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// A source that keeps presenting bad keys is refused at once with 429.
	b, _ := os.ReadFile(exKey)
	keyBytes := strings.TrimSpace(string(b))
	pool := x509.NewCertPool()
	rootPEM, _ := os.ReadFile(ca.root)
	pool.AppendCertsFromPEM(rootPEM)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	var resp *http.Response
	var err error
	for i := 0; i < 100; i++ {
		req, _ := http.NewRequest(http.MethodPost, ex.mcp, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Authorization", "Bearer "+keyBytes)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if resp, err = hc.Do(req); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			break
		}
	}
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("a source failing again and again: %s, Retry-After %q; want 429 and 1", resp.Status, resp.Header.Get("Retry-After"))
	}
	fails(t, w, "server answered 429 Too Many Requests: too many failed attempts: too many refused bearer credentials from 127.0.0.1: try again in 1s",
		mcpArgs(ex, exKey, "mcp", "tools")...)
	logs := ex.logs.String()
	if !strings.Contains(logs, `"msg":"bearer credential refused unread: source rate-limited","source":"127.0.0.1"`) {
		t.Errorf("no log line of the rate-limited source:\n%s", logs)
	}
	secret := keyBytes[len("mcpca_ak_"):]
	for _, p := range []*proc{ex, gw} {
		if strings.Contains(p.logs.String(), secret[:16]) {
			t.Errorf("%s logged (part of) an API key", filepath.Base(p.cmd.Path))
		}
	}
}

// startKeyedCA is a served CA with the server certificate files.crt/.key
// (localhost, 127.0.0.1) in its directory, and the absolute path of the
// auth-methods policy the API-key tests run under.
func startKeyedCA(t *testing.T) (*servedCA, string) {
	t.Helper()
	ca := startServedCA(t)
	tok := strings.TrimSpace(ok(t, ca.dir, "token", "files", "--server", "--dns", "localhost", "--ip", "127.0.0.1", "--dir", "pki", "--ttl", "1h").stdout)
	ok(t, ca.dir, "enroll", "--token", tok, "--ca-url", ca.url, "--root", ca.root, "--cert", "files.crt", "--key", "files.key")
	policy, err := filepath.Abs("../../scripts/policies/auth-methods.cedar")
	if err != nil {
		t.Fatal(err)
	}
	return ca, policy
}

// apiKeyFile creates the API key name (role reader, attribute team=a) for
// audience aud with mcpca apikey create in w, and writes it to NAME.key
// (0600); it returns that file's path.
func apiKeyFile(t *testing.T, w, name, aud string) string {
	t.Helper()
	k := strings.TrimSpace(ok(t, w, "apikey", "create", name, "--dir", "pki", "--role", "reader", "--attr", "team=a", "--audience", aud, "--ttl", "1h").stdout)
	p := filepath.Join(w, name+".key")
	if err := os.WriteFile(p, []byte(k+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
