//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/internal/nodetest"
	"github.com/mcpca/mcpca/internal/testca"
)

// The gateway's policy in the interop test: readers list, call the
// everything server's harmless tools (and the example's read-only ones),
// read and subscribe to its static and session resources; admins may do
// everything. get-env (the server's environment) is an admin's only.
const interopGatewayPolicy = `
@id("clients-list")
permit (
  principal,
  action in [Mcp::Action::"tools/list", Mcp::Action::"resources/list", Mcp::Action::"resources/templates/list", Mcp::Action::"prompts/list"],
  resource
);

@id("readers-tools")
permit (principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource)
when { ["echo", "get-sum", "trigger-sampling-request", "trigger-elicitation-request", "get-roots-list",
        "toggle-subscriber-updates", "gzip-file-as-resource",
        "search_docs", "get_weather", "whoami"].contains(resource.name) };

@id("readers-resources")
permit (
  principal in Mcp::Role::"reader",
  action in [Mcp::Action::"resources/read", Mcp::Action::"resources/subscribe", Mcp::Action::"resources/unsubscribe"],
  resource is Mcp::Resource
) when { resource.uri like "demo://resource/static/*" || resource.uri like "demo://resource/session/*" || resource.uri like "docs://*" };

@id("admins-everything")
permit (principal in Mcp::Role::"admin", action, resource);
`

// The example server's own policy when it sits behind the gateway: the
// gateway decided already; the example serves the gateway (and only it).
const interopExamplePolicy = `
@id("the-gateway")
permit (principal == Mcp::Server::"spiffe://acme.test/server/gateway", action, resource);
`

// readerTools are the everything server's tools alice (reader) is shown.
const readerTools = "echo,get-roots-list,get-sum,gzip-file-as-resource,toggle-subscriber-updates,trigger-elicitation-request,trigger-sampling-request"

// interopProc is a process the test started, in a process group of its own, with
// its output collected.
type interopProc struct {
	name  string
	cmd   *exec.Cmd
	mu    sync.Mutex
	all   bytes.Buffer
	lines chan string
	done  chan struct{}
}

func startInteropProc(t *testing.T, name string, cmd *exec.Cmd) *interopProc {
	t.Helper()
	p := &interopProc{name: name, cmd: cmd, lines: make(chan string, 4096), done: make(chan struct{})}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	w.Close()
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.all.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		r.Close()
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends the process group: SIGTERM, then SIGKILL after 10s.
func (p *interopProc) stop(t *testing.T) {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Logf("%s: no exit 10s after SIGTERM: killing it", p.name)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // anything it left behind
	<-p.done
	if t.Failed() {
		t.Logf("%s output:\n%s", p.name, p.output())
	}
}

func (p *interopProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.all.String()
}

// waitJSON returns the first JSON line from now on whose key has a value,
// decoded.
func (p *interopProc) waitJSON(t *testing.T, key string) map[string]any {
	t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for {
		select {
		case s := <-p.lines:
			var m map[string]any
			if json.Unmarshal([]byte(s), &m) == nil && m[key] != nil {
				return m
			}
		case <-p.done:
			t.Fatalf("%s exited before logging %q: %v\n%s", p.name, key, p.cmd.Wait(), p.output())
		case <-deadline.C:
			t.Fatalf("%s logged no %q in a minute:\n%s", p.name, key, p.output())
		}
	}
}

// waitServing returns the MCP URL of a gateway or example server from its
// "serving" log line.
func (p *interopProc) waitServing(t *testing.T) string {
	t.Helper()
	for {
		if m := p.waitJSON(t, "msg"); m["msg"] == "serving" {
			return m["mcp"].(string)
		}
	}
}

func writeInteropFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInteropGateway puts mcpca-gateway between two parties no one at mcpca
// wrote: the official TypeScript MCP SDK as the client, and the MCP
// project's reference server (@modelcontextprotocol/server-everything,
// Streamable HTTP) as the upstream, each a real process; and a second
// gateway in front of mcpca-example over mTLS. It needs node and npm, and
// npm must be able to install the packages of scripts/interop-gateway
// (internal/nodetest: once, cached); otherwise it skips and says why, or
// fails under MCPCA_REQUIRE_NODE=1 (CI). scripts/interop-gateway/run.sh
// runs it verbosely.
func TestInteropGateway(t *testing.T) {
	work, node := nodetest.Install(t, "interop-gateway", filepath.Join("..", "..", "scripts", "interop-gateway"), "interop.mjs", "everything.mjs")

	// The binaries, built from this tree.
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/mcpca-gateway", "./cmd/mcpca-example")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// A test PKI: the gateway (server and, to the example, client), the
	// example server, alice (reader) and bob (admin).
	dir := t.TempDir()
	ca := testca.NewCA(t, "acme.test")
	loopback := testca.WithIPAddresses(net.IPv4(127, 0, 0, 1))
	root := writeInteropFile(t, filepath.Join(dir, "root.crt"), ca.RootsPEM())
	crl := writeInteropFile(t, filepath.Join(dir, "ca.crl"), testca.CRLPEM(ca.CreateCRL()))
	pair := func(name string, svid *testca.SVID) (string, string) {
		return writeInteropFile(t, filepath.Join(dir, name+".crt"), svid.ChainPEM()),
			writeInteropFile(t, filepath.Join(dir, name+".key"), testca.KeyPEM(t, svid.Key))
	}
	gwCert, gwKey := pair("gateway", ca.CreateSVID("spiffe://acme.test/server/gateway", loopback))
	exCert, exKey := pair("example", ca.CreateSVID("spiffe://acme.test/server/example", loopback, testca.WithDNSNames("localhost")))
	aliceCert, aliceKey := pair("alice", ca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader")))
	bobCert, bobKey := pair("bob", ca.CreateSVID("spiffe://acme.test/client/bob", testca.WithRoles("admin")))
	gwPolicy := writeInteropFile(t, filepath.Join(dir, "gateway.cedar"), []byte(interopGatewayPolicy))
	exPolicy := writeInteropFile(t, filepath.Join(dir, "example.cedar"), []byte(interopExamplePolicy))
	gwAudit := filepath.Join(dir, "gateway-audit.log")

	// The everything server, on a free loopback port, with an environment
	// of its own (get-env shows it to admins).
	ev := exec.Command(node, "everything.mjs")
	ev.Dir = work
	ev.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "PORT=0", "MCPCA_INTEROP=gateway",
		"GZIP_ALLOWED_DOMAINS=invalid.invalid"} // data: URIs only: no fetch leaves the host
	everything := startInteropProc(t, "server-everything", ev)
	port := int(everything.waitJSON(t, "listening")["listening"].(float64))
	upstream := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)

	gateway := func(name, upstream string, extra ...string) string {
		args := append([]string{"--listen", "127.0.0.1:0", "--cert", gwCert, "--key", gwKey, "--root", root,
			"--policy", gwPolicy, "--crl", crl, "--upstream", upstream}, extra...)
		return startInteropProc(t, name, exec.Command(filepath.Join(bin, "mcpca-gateway"), args...)).waitServing(t)
	}
	gwURL := gateway("gateway (everything)", upstream, "--audit", gwAudit)

	// mcpca-example, itself an mTLS server, behind a second gateway.
	ex := startInteropProc(t, "mcpca-example", exec.Command(filepath.Join(bin, "mcpca-example"), "--listen", "127.0.0.1:0",
		"--cert", exCert, "--key", exKey, "--root", root, "--policy", exPolicy, "--crl", crl))
	// The upstream is named by host name: with an IP address, --upstream-mtls
	// has no server name to check the example's certificate against.
	exUpstream := strings.Replace(ex.waitServing(t), "https://127.0.0.1:", "https://localhost:", 1)
	exURL := gateway("gateway (example)", exUpstream, "--upstream-mtls")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "interop.mjs")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "MCP_URL="+gwURL, "EXAMPLE_URL="+exURL, "CA="+root,
		"ALICE_CERT="+aliceCert, "ALICE_KEY="+aliceKey, "BOB_CERT="+bobCert, "BOB_KEY="+bobKey,
		"READER_TOOLS="+readerTools, "ENV_TOOL=get-env", "ENV_MARKER=MCPCA_INTEROP=gateway",
		"EXAMPLE_WHOAMI=spiffe://acme.test/server/gateway roles=")
	out, err := cmd.CombinedOutput()
	t.Logf("node interop.mjs:\n%s", out)
	if err != nil {
		t.Errorf("the TypeScript SDK client failed: %v", err)
	}
	for _, want := range []string{
		"ok connected as alice: server mcp-servers/everything 2.0.0",
		"ok tools/list as alice (reader): " + strings.ReplaceAll(readerTools, ",", ", "),
		"ok tools/list as bob (admin): ",
		"ok tools/call echo: Echo: hello through the gateway",
		"ok tools/call get-sum: The sum of 2 and 3 is 5.",
		"ok tools/call get-env as alice: denied (-32010 MCP error -32010: permission denied)",
		"ok tools/call no-such-tool as alice: denied (-32010 MCP error -32010: permission denied)",
		"ok tools/call get-env as bob: the server's environment, MCPCA_INTEROP=gateway in it",
		`ok sampling round trip: the server asked "Resource trigger-sampling-request context: ping"`,
		`ok elicitation round trip: the server asked "Please provide inputs for the following fields:"`,
		"ok roots round trip: ",
		"ok resources/list as alice: ",
		"ok resources/read demo://resource/dynamic/blob/1 as alice: denied (-32010 MCP error -32010: permission denied)",
		"ok notification notifications/resources/list_changed reached the client",
		"ok resources/list then lists demo://resource/session/interop.txt.gz",
		"ok notifications/resources/updated for demo://resource/static/document/architecture.md reached the client",
		"ok bob with alice's Mcp-Session-Id: 403 session belongs to another identity",
		"ok alice's session after DELETE: 404 session not found",
		"ok example: connected as alice: server mcpca-example",
		"ok example: tools/list as alice: get_weather, search_docs, whoami",
		"ok example: tools/call whoami as alice: the example sees spiffe://acme.test/server/gateway roles=",
		"ok example: tools/call delete_record as alice: denied (-32010 MCP error -32010: permission denied)",
		"ok example: tools/call delete_record as bob: record 7 deleted",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(string(out), "FAIL") {
		t.Errorf("a check failed (FAIL above)")
	}

	// Every decision of the first gateway is in its audit log, chained.
	f, err := os.Open(gwAudit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := audit.Verify(f); err != nil || n < 20 {
		t.Errorf("the gateway's audit log: %d records, %v", n, err)
	}
}
