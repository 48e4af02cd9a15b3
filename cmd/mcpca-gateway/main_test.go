package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/testca"
)

var gatewayBin string

func TestMain(m *testing.M) {
	if os.Getenv("MCPCA_GATEWAY_STDIO") == "1" { // the stdio upstream of TestGatewayProcessStdio
		_ = mcpexample.NewServer().Run(context.Background(), &mcp.StdioTransport{})
		return
	}
	dir, err := os.MkdirTemp("", "mcpca-gateway-test")
	if err != nil {
		panic(err)
	}
	gatewayBin = filepath.Join(dir, "mcpca-gateway")
	if out, err := exec.Command("go", "build", "-o", gatewayBin, ".").CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running mcpca-gateway and what it logged.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs []map[string]any
	seen chan struct{} // a line was logged
	done chan error
}

func startGateway(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(gatewayBin, args...), seen: make(chan struct{}, 64), done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), "MCPCA_GATEWAY_STDIO=1") // for a stdio upstream that is this test binary
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"msg": sc.Text()}
			}
			p.mu.Lock()
			p.logs = append(p.logs, m)
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
	})
	return p
}

// waitLog waits for a log line with msg and returns it.
func (p *proc) waitLog(t *testing.T, msg string, after int) (map[string]any, int) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		p.mu.Lock()
		for i := after; i < len(p.logs); i++ {
			if p.logs[i]["msg"] == msg {
				l := p.logs[i]
				p.mu.Unlock()
				return l, i + 1
			}
		}
		p.mu.Unlock()
		select {
		case <-p.seen:
		case err := <-p.done:
			t.Fatalf("mcpca-gateway exited (%v) before logging %q: %v", err, msg, p.logs)
		case <-deadline:
			t.Fatalf("no %q in the log: %v", msg, p.logs)
		}
	}
}

// fixture is a test CA with the gateway's certificate, its root and a
// policy in files, and a verifier of the CA's certificates for clients.
type fixture struct {
	tca                       *testca.CA
	dir, cert, key, root, pol string
	v                         *identity.Verifier
}

func newFixture(t *testing.T, policy string) *fixture {
	t.Helper()
	f := &fixture{tca: testca.NewCA(t, "acme.test"), dir: t.TempDir()}
	gw := f.tca.CreateSVID("spiffe://acme.test/server/gateway", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	f.cert, f.key = gw.WriteFiles(t, f.dir)
	f.root = f.write(t, "root.crt", string(f.tca.RootsPEM()))
	f.pol = f.write(t, "policy.cedar", policy)
	bundle, err := trust.ParseBundlePEM(f.tca.RootsPEM())
	if err != nil {
		t.Fatal(err)
	}
	if f.v, err = identity.NewVerifier(trust.NewBundleStore(bundle), identity.WithTrustDomains("acme.test")); err != nil {
		t.Fatal(err)
	}
	return f
}

// write writes a file of the fixture's directory and returns its path.
func (f *fixture) write(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(f.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// client is an mTLS HTTP client of svid that checks the gateway's
// certificate for 127.0.0.1.
func (f *fixture) client(t *testing.T, svid *testca.SVID) *http.Client {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: identity.ClientTLSConfig(identity.StaticCertificate{Cert: &svid.TLS}, f.v, identity.WithServerName("127.0.0.1"))}}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// connect opens an MCP session as svid at url, closed when the test ends.
func (f *fixture) connect(t *testing.T, ctx context.Context, url string, svid *testca.SVID) *mcp.ClientSession {
	t.Helper()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: url, HTTPClient: f.client(t, svid), DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// upstream serves srv over plain HTTP on loopback and returns its MCP URL.
func upstream(t *testing.T, srv *mcp.Server) string {
	up := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(up.Close)
	return up.URL + "/mcp"
}

const procPolicy = `
@id("list") permit (principal, action == Mcp::Action::"tools/list", resource);
@id("readers") permit (principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource)
  when { ["search_docs", "whoami"].contains(resource.name) };
`

// The binary end to end: a go-sdk upstream that knows nothing of mcpca,
// the gateway process in front of it, a go-sdk client; policy decisions
// and their audit records, /healthz and /metrics, SIGHUP reloading an
// edited policy, SIGTERM stopping cleanly.
func TestGatewayProcess(t *testing.T) {
	f := newFixture(t, procPolicy)
	auditFile := filepath.Join(f.dir, "audit.log")
	upURL := upstream(t, mcpexample.NewServer())

	p := startGateway(t, "--listen", "127.0.0.1:0", "--cert", f.cert, "--key", f.key, "--root", f.root,
		"--policy", f.pol, "--audit", auditFile, "--upstream", upURL, "--poll", "1h", "--drain-timeout", "5s")
	serving, next := p.waitLog(t, "serving", 0)
	addr := serving["addr"].(string)
	if serving["upstream"] != upURL || serving["gateway"] != "spiffe://acme.test/server/gateway" {
		t.Errorf("serving line: %v", serving)
	}

	alice := f.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	hc := f.client(t, alice)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := f.connect(t, ctx, "https://"+addr+"/mcp", alice)
	tools, err := cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 2 {
		t.Fatalf("alice's tools: %v %v", tools, err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: mcpexample.ToolSearchDocs, Arguments: map[string]any{"query": "x"}}); err != nil {
		t.Fatal(err)
	}
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: mcpexample.ToolDeleteRecord, Arguments: map[string]any{"id": "1"}})
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != mcpauth.CodeDenied {
		t.Fatalf("delete_record: %v", err)
	}

	get := func(path string) string {
		resp, err := hc.Get("https://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	if h := get("/healthz"); !strings.Contains(h, `"status":"ok"`) || !strings.Contains(h, `"upstreams":{"/mcp":"`+upURL+`"}`) {
		t.Errorf("healthz: %s", h)
	}
	m := get("/metrics")
	for _, want := range []string{`mcpca_gateway_decisions_total{action="tools/call",outcome="allow"} 1`,
		`mcpca_gateway_decisions_total{action="tools/call",outcome="deny"} 1`, `mcpca_gateway_sessions_open 1`, "mcpca_gateway_upstream_seconds_count"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// SIGHUP reloads an edited policy: search_docs is gone for readers.
	f.write(t, "policy.cedar", strings.Replace(procPolicy, `"search_docs", `, "", 1))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "reloaded", next)
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: mcpexample.ToolSearchDocs, Arguments: map[string]any{"query": "x"}})
	if !errors.As(err, &je) || je.Code != mcpauth.CodeDenied {
		t.Fatalf("search_docs after the reload: %v", err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	log, err := os.Open(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	if n, err := audit.Verify(log); err != nil || n != 4 {
		t.Errorf("audit log: %d records, %v; want 4 (list, call, denied call, denied call)", n, err)
	}
}

// Invalid invocations exit 1 at once with their message.
func TestGatewayBadInvocations(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, `mcpca-gateway: required flag(s) "cert", "key", "root" not set`},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p"}, `mcpca-gateway: at least one of the flags in the group [upstream upstream-cmd config] is required`},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--upstream", "http://x/mcp", "--upstream-cmd", "x"}, `mcpca-gateway: if any flags in the group [upstream upstream-cmd config] are set none of the others can be; [upstream upstream-cmd] were all set`},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--upstream", "http://x/mcp"}, `mcpca-gateway: --policy is required (or --config with a policy per route)`},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--config", "nope.yaml"}, `mcpca-gateway: --config: open nope.yaml: no such file or directory`},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--upstream", "http://x/mcp", "--path", "mcp"}, `mcpca-gateway: --path "mcp" must start with /`},
		{[]string{"--cert", "nope.crt", "--key", "k", "--root", "r", "--policy", "p", "--upstream", "http://x/mcp"}, "mcpca-gateway: trust: "},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--upstream", "http://x/mcp", "--require-bound-tokens"}, "mcpca-gateway: --resource, --token-scope and --require-bound-tokens need --token-issuer"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--upstream", "http://x/mcp", "--apikey-refresh", "-1s"}, "mcpca-gateway: --apikey-refresh must be positive, got -1s"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--upstream", "http://x/mcp", "--token-issuer", "https://as.test?a=b"}, `mcpca-gateway: --token-issuer: oauth: issuer "https://as.test?a=b": want https://HOST[/PATH], without query, fragment or user`},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--upstream", "http://x/mcp", "--upstream-arg", "x"}, "mcpca-gateway: --upstream-arg needs --upstream-cmd (the program whose argument it is)"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--upstream-cmd", `node "my server.js`}, "mcpca-gateway: --upstream-cmd: the double quote at byte 6 is never closed"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--upstream-cmd", "node s.js > log"}, "mcpca-gateway: --upstream-cmd: '>' is shell syntax, and the command runs without a shell: quote it ('>') to pass it as an argument"},
	} {
		out, err := exec.Command(gatewayBin, tc.args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: exit %v, output %q; want 1 and %q", tc.args, err, out, tc.want)
		}
	}
	if out, err := exec.Command(gatewayBin, "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "--upstream string") {
		t.Errorf("--help: %v %s", err, out)
	}
}

// The binary with a stdio upstream (this test binary serving the example
// server on stdio): calls decided and served, the process stopped with
// the gateway.
func TestGatewayProcessStdio(t *testing.T) {
	f := newFixture(t, procPolicy)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := startGateway(t, "--listen", "127.0.0.1:0", "--cert", f.cert, "--key", f.key, "--root", f.root,
		"--policy", f.pol, "--upstream-cmd", exe, "--poll", "1h")
	serving, _ := p.waitLog(t, "serving", 0)
	alice := f.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := f.connect(t, ctx, "https://"+serving["addr"].(string)+"/mcp", alice)
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: mcpexample.ToolWhoAmI})
	if err != nil || res.IsError {
		t.Fatalf("whoami over stdio: %+v %v", res, err)
	}
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: mcpexample.ToolDeleteRecord, Arguments: map[string]any{"id": "1"}})
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != mcpauth.CodeDenied {
		t.Fatalf("delete_record over stdio: %v", err)
	}
	_ = cs.Close()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var started, ended bool
	for _, l := range p.logs {
		started = started || l["msg"] == "gateway: stdio upstream started"
		ended = ended || l["msg"] == "gateway: stdio upstream ended"
	}
	if !started || !ended {
		t.Errorf("the log does not show the stdio process started and ended: %v", p.logs)
	}
}

// Several routes from --config, each with its upstream and policy: the
// same client is decided by each route's own policy; a bad file is
// refused at start with its message.
func TestGatewayProcessRoutes(t *testing.T) {
	f := newFixture(t, procPolicy)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	upURL := upstream(t, mcpexample.NewServer())
	f.write(t, "docs.cedar", procPolicy)
	f.write(t, "stdio.cedar", `@id("w") permit (principal, action == Mcp::Action::"tools/call", resource) when { resource.name == "whoami" };`)
	cfg := f.write(t, "gateway.yaml", "routes:\n"+
		"  - path: /docs/mcp\n    upstream: "+upURL+"\n    policy: docs.cedar\n"+
		"  - path: /stdio/mcp\n    upstream_cmd: ["+exe+"]\n    policy: stdio.cedar\n")
	for content, want := range map[string]string{
		"routes:\n  - path: /x\n    policy: p.cedar\n":                                 "route 1: give one of upstream and upstream_cmd",
		"routes:\n  - path: /x\n    upstream: http://x\n    policy: p\n    polcy: q\n": "field polcy not found",
	} {
		out, err := exec.Command(gatewayBin, "--cert", f.cert, "--key", f.key, "--root", f.root, "--config", f.write(t, "bad.yaml", content)).CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("%q: %v %s; want %q", content, err, out, want)
		}
	}
	p := startGateway(t, "--listen", "127.0.0.1:0", "--cert", f.cert, "--key", f.key, "--root", f.root,
		"--config", cfg, "--poll", "1h")
	serving, _ := p.waitLog(t, "serving", 0)
	addr := serving["addr"].(string)
	alice := f.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	connect := func(path string) *mcp.ClientSession { return f.connect(t, ctx, "https://"+addr+path, alice) }
	docs, stdio := connect("/docs/mcp"), connect("/stdio/mcp")
	var je *jsonrpc.Error
	// search_docs: allowed on /docs (its policy), denied on /stdio (its own).
	if _, err := docs.CallTool(ctx, &mcp.CallToolParams{Name: mcpexample.ToolSearchDocs, Arguments: map[string]any{"query": "x"}}); err != nil {
		t.Fatalf("search_docs on /docs: %v", err)
	}
	if _, err := stdio.CallTool(ctx, &mcp.CallToolParams{Name: mcpexample.ToolSearchDocs, Arguments: map[string]any{"query": "x"}}); !errors.As(err, &je) || je.Code != mcpauth.CodeDenied {
		t.Fatalf("search_docs on /stdio: %v", err)
	}
	if _, err := stdio.CallTool(ctx, &mcp.CallToolParams{Name: mcpexample.ToolWhoAmI}); err != nil {
		t.Fatalf("whoami on /stdio: %v", err)
	}
}

// SIGTERM drains: a call in flight is answered before the gateway exits;
// one that outlives --drain-timeout is cut, and the log says so.
func TestGatewayDrainsOnSIGTERM(t *testing.T) {
	f := newFixture(t, `@id("all") permit (principal, action, resource);`)
	alice := f.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	for _, tc := range []struct {
		name, drain string
		release     bool
	}{{"answered", "30s", true}, {"cut", "200ms", false}} {
		t.Run(tc.name, func(t *testing.T) {
			started, release := make(chan struct{}, 4), make(chan struct{})
			srv := mcp.NewServer(&mcp.Implementation{Name: "slow", Version: "1"}, nil)
			srv.AddTool(&mcp.Tool{Name: "slow", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				started <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "released"}}}, nil
			})
			p := startGateway(t, "--listen", "127.0.0.1:0", "--cert", f.cert, "--key", f.key, "--root", f.root,
				"--policy", f.pol, "--upstream", upstream(t, srv), "--poll", "1h", "--drain-timeout", tc.drain)
			serving, next := p.waitLog(t, "serving", 0)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cs := f.connect(t, ctx, "https://"+serving["addr"].(string)+"/mcp", alice)
			answer := make(chan error, 1)
			go func() {
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "slow"})
				if err == nil && (res.IsError || len(res.Content) == 0) {
					err = errors.New("no answer")
				}
				answer <- err
			}()
			<-started
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if tc.release {
				close(release)
				if err := <-answer; err != nil {
					t.Fatalf("the call in flight during the drain: %v", err)
				}
			} else {
				p.waitLog(t, "drain timed out: closing the streams still open", next)
				if err := <-answer; err == nil {
					t.Fatal("the call outliving the drain was answered")
				}
			}
			if err := <-p.done; err != nil {
				t.Fatalf("exit: %v", err)
			}
		})
	}
}
