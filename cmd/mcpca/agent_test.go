package main

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcpca/mcpca/agent"
)

// agentProc is a running `mcpca agent` whose JSON log lines a test reads.
type agentProc struct {
	cmd   *exec.Cmd
	lines chan map[string]any
	done  chan error
}

func startAgent(t *testing.T, dir string, args ...string) *agentProc {
	t.Helper()
	cmd := exec.Command(mcpcaBin, append([]string{"agent"}, args...)...)
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, lines: make(chan map[string]any, 1000), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"msg": "not JSON: " + sc.Text()}
			}
			p.lines <- m
		}
		io.Copy(io.Discard, stderr)
		close(p.lines)
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// waitFor reads log lines until one has msg (and identity, if not empty).
func (p *agentProc) waitFor(t *testing.T, msg, identity string) map[string]any {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case m, ok := <-p.lines:
			if !ok {
				t.Fatalf("the agent exited before logging %q", msg)
			}
			if strings.HasPrefix(m["msg"].(string), "not JSON") {
				t.Errorf("log line %s", m["msg"])
			}
			if m["msg"] == msg && (identity == "" || m["identity"] == identity) {
				return m
			}
		case <-timeout:
			t.Fatalf("no %q in the agent's log", msg)
		}
	}
}

func TestCLIAgentEnrolsReportsHealthReloadsAndStops(t *testing.T) {
	ca := startServedCA(t)
	w := ca.dir
	tok := strings.TrimSpace(ok(t, w, "token", "web", "--server", "--dns", "localhost", "--dir", "pki", "--role", "mcp-server", "--ttl", "1h").stdout)
	if err := os.WriteFile(filepath.Join(w, "web.token"), []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	health := freeAddr(t)
	config := `health_addr: ` + health + `
identities:
  - name: web
    ca_url: ` + ca.url + `
    root: ` + ca.root + `
    cert: web/cert.pem
    key: web/key.pem
    bundle: web/bundle.pem
    token_file: web.token
    hooks:
      - exec: [sh, -c, "echo reloaded >> hook.log"]
`
	if err := os.WriteFile(filepath.Join(w, "agent.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startAgent(t, w, "--config", "agent.yaml")
	p.waitFor(t, "agent: enrolled with the token file", "web")
	p.waitFor(t, "agent: renewing", "web")
	info := ok(t, w, "inspect", "web/cert.pem").stdout
	if !strings.Contains(info, "spiffe://acme.test/server/web") {
		t.Fatalf("inspect: %s", info)
	}
	if st, err := os.Stat(filepath.Join(w, "web", "key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(w, "hook.log")); string(b) != "reloaded\n" {
		t.Fatalf("hook log %q", b)
	}
	resp, err := http.Get("http://" + health + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"name":"web","healthy":true`) {
		t.Fatalf("healthz %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + health + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `mcpca_agent_certificate_expiry_seconds{identity="web"}`) {
		t.Fatalf("metrics lack the expiry gauge")
	}

	// SIGHUP reloads; the unchanged identity keeps running untouched.
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitFor(t, "agent: configuration reloaded", "")
	// SIGTERM stops cleanly.
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitFor(t, "agent: stopped", "")
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("agent exit: %v", err)
	}

	// A restart finds the certificate on disk: no renewal, no enrolment,
	// the same renewal time.
	before, _ := os.ReadFile(filepath.Join(w, "web", "cert.pem"))
	p = startAgent(t, w, "--config", "agent.yaml")
	p.waitFor(t, "agent: renewing", "web")
	next := p.waitFor(t, "agent: next renewal", "web")
	// A one-hour certificate renews after 2/3 of its life, less up to 5%
	// of jitter: not before 36 minutes from its issue.
	in, _ := next["in"].(string)
	if d, err := time.ParseDuration(in); err != nil || d < 30*time.Minute {
		t.Fatalf("after a restart the next renewal is in %q", in)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitFor(t, "agent: stopped", "")
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("agent exit: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(w, "web", "cert.pem"))
	if string(before) != string(after) {
		t.Fatal("the restart replaced the certificate")
	}
	logs := ca.stderr.String()
	if n := strings.Count(logs, `"event":"issue"`); n != 1 {
		t.Fatalf("the CA issued %d certificates", n)
	}
	if strings.Contains(logs, `"event":"renew"`) {
		t.Fatal("the CA saw a renewal")
	}
}

// Without a certificate or a token the agent says how to get one and waits,
// instead of exiting into a restart loop.
func TestCLIAgentWithoutCertificateOrTokenWaits(t *testing.T) {
	ca := startServedCA(t)
	w := ca.dir
	p := startAgent(t, w, "--cert", "missing.crt", "--key", "missing.key", "--ca-url", ca.url, "--root", ca.root, "--name", "old")
	m := p.waitFor(t, "agent: no usable certificate; will try again", "old")
	want := `agent: identity "old": there is no certificate yet and no token_file is configured: set token_file to a file holding a new token (mcpca token) and reload the agent (SIGHUP), or run mcpca enroll`
	if m["error"] != want {
		t.Fatalf("error %q", m["error"])
	}
	// It does not exit: it waits until stopped.
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitFor(t, "agent: stopped", "")
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("agent exit: %v", err)
	}
}

func TestCLIAgentBadInvocations(t *testing.T) {
	dir := t.TempDir()
	fails(t, dir, "mcpca: missing --cert, --key, --ca-url, --root: give --config FILE, or --cert, --key, --ca-url and --root", "agent")
	fails(t, dir, "mcpca: --cert cannot be combined with --config: put it in the configuration file", "agent", "--config", "a.yaml", "--cert", "c.pem")
	fails(t, dir, "mcpca: agent: reading config: open a.yaml: no such file or directory", "agent", "--config", "a.yaml")
	fails(t, dir, `mcpca: agent: identity "default": renew_at 1.5 is not between 0 and 1`, "agent", "--cert", "c", "--key", "k", "--ca-url", "https://ca", "--root", "r", "--renew-at", "1.5")
	fails(t, dir, `mcpca: agent: health address "0.0.0.0:9465" is not a loopback address`, "agent", "--cert", "c", "--key", "k", "--ca-url", "https://ca", "--root", "r", "--health-addr", "0.0.0.0:9465")
	fails(t, dir, `mcpca: agent: identity "default": ca_url "http://ca" must start with https://`, "agent", "--cert", "c", "--key", "k", "--ca-url", "http://ca", "--root", "r")
	// Files that cannot work exit at start too, naming the file.
	fails(t, dir, `mcpca: agent: identity "default": the CA root: reading certificates: open r: no such file or directory`, "agent", "--cert", "c", "--key", "k", "--ca-url", "https://ca", "--root", "r")
	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	fails(t, dir, `mcpca: agent: identity "default": the CA root: `, "agent", "--cert", "c", "--key", "k", "--ca-url", "https://ca", "--root", "junk.pem")
}

// The single-identity flag form with every option that acts: it enrols from
// the token file, renews at --renew-at against the real CA (a five-minute
// certificate renewed a quarter of the way through, within half a minute),
// runs the --exec command and signals --signal-pid once per new certificate,
// and serves /healthz and /metrics on --health-addr.
func TestCLIAgentFlagFormRenewsRunsHooksAndServesHealth(t *testing.T) {
	ca := startServedCA(t)
	w := ca.dir
	tok := strings.TrimSpace(ok(t, w, "token", "web", "--server", "--dns", "localhost", "--dir", "pki", "--ttl", "5m").stdout)
	tokenFile := filepath.Join(w, "web.token")
	hookLog := filepath.Join(w, "hook.log")
	hook := filepath.Join(w, "hook.sh")
	for name, content := range map[string]string{
		tokenFile: tok + "\n",
		hook:      `echo "run $MCPCA_IDENTITY" >> ` + hookLog + "\n",
	} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The agent signals this test process; stop listening only after the
	// agent is gone (cleanups run last in, first out), since an unhandled
	// SIGUSR1 would end the test binary.
	signals := make(chan os.Signal, 10)
	signal.Notify(signals, syscall.SIGUSR1)
	t.Cleanup(func() { signal.Stop(signals) })
	health := freeAddr(t)
	certFile := filepath.Join(w, "web", "cert.pem")
	p := startAgent(t, w, "--cert", certFile, "--key", filepath.Join(w, "web", "key.pem"), "--ca-url", ca.url, "--root", ca.root,
		"--token-file", tokenFile, "--renew-at", "0.25", "--health-addr", health,
		"--exec", "sh "+hook, "--signal-pid", strconv.Itoa(os.Getpid()), "--signal", "USR1")

	p.waitFor(t, "agent: enrolled with the token file", "default")
	p.waitFor(t, "agent: renewing", "default")
	enrolled := leafOf(t, certFile)
	next := p.waitFor(t, "agent: next renewal", "default")
	at, err := time.Parse(time.RFC3339Nano, next["at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	checkRenewAt(t, "first certificate", enrolled, at)
	// The hooks ran once for the enrolment.
	waitSignals(t, signals, 1)
	waitFor(t, func() bool { b, _ := os.ReadFile(hookLog); return string(b) == "run default\n" },
		func() string { b, _ := os.ReadFile(hookLog); return "hook log " + string(b) })

	code, body := httpGet(t, "http://"+health+"/healthz")
	if code != 200 || !strings.Contains(body, `"name":"default","healthy":true`) {
		t.Fatalf("healthz %d %s", code, body)
	}

	// The renewal, at the point --renew-at set.
	renewed := p.waitFor(t, "agent: certificate renewed", "default")
	now := leafOf(t, certFile)
	if now.SerialNumber.Cmp(enrolled.SerialNumber) == 0 || renewed["serial"] != now.SerialNumber.Text(16) {
		t.Fatalf("the certificate on disk (serial %s) is not the renewed one (%v)", now.SerialNumber.Text(16), renewed["serial"])
	}
	at, err = time.Parse(time.RFC3339Nano, renewed["renew_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	checkRenewAt(t, "renewed certificate", now, at)
	// The hooks ran exactly once more.
	waitSignals(t, signals, 1)
	waitFor(t, func() bool { b, _ := os.ReadFile(hookLog); return string(b) == "run default\nrun default\n" },
		func() string { b, _ := os.ReadFile(hookLog); return "hook log " + string(b) })
	code, body = httpGet(t, "http://"+health+"/metrics")
	if code != 200 || !strings.Contains(body, `mcpca_agent_certificate_expiry_seconds{identity="default"}`) ||
		!strings.Contains(body, `mcpca_agent_renewals_total{identity="default"} 1`+"\n") ||
		!strings.Contains(body, `mcpca_agent_renewal_failures_total{identity="default"} 0`+"\n") {
		t.Fatalf("metrics %d:\n%s", code, body)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitFor(t, "agent: stopped", "")
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("agent exit: %v", err)
	}
	if b, _ := os.ReadFile(hookLog); string(b) != "run default\nrun default\n" {
		t.Fatalf("hook log %q", b)
	}
	select {
	case <-signals:
		t.Fatal("a third signal")
	default:
	}
	logs := ca.stderr.String()
	if n := strings.Count(logs, `"event":"renew"`); n != 1 {
		t.Fatalf("the CA renewed %d times", n)
	}
}

// A health address in use stops the agent before it enrols: the error names
// the address and the token stays unspent.
func TestCLIAgentHealthAddressInUse(t *testing.T) {
	ca := startServedCA(t)
	w := ca.dir
	tok := strings.TrimSpace(ok(t, w, "token", "web", "--server", "--dns", "localhost", "--dir", "pki", "--ttl", "5m").stdout)
	if err := os.WriteFile(filepath.Join(w, "web.token"), []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	fails(t, w, "mcpca: agent: health endpoint: listen tcp "+addr+": bind: address already in use\n",
		"agent", "--cert", "web/cert.pem", "--key", "web/key.pem", "--ca-url", ca.url, "--root", ca.root,
		"--token-file", "web.token", "--health-addr", addr)
	if _, err := os.Stat(filepath.Join(w, "web", "cert.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a certificate was written: %v", err)
	}
	if logs := ca.stderr.String(); strings.Contains(logs, `"event":"issue"`) {
		t.Fatal("the token was spent")
	}
}

// leafOf reads the first certificate of a PEM file.
func leafOf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := agent.LoadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// checkRenewAt wants at to be the --renew-at 0.25 point of leaf's lifetime,
// brought forward by at most the default jitter (5% of the lifetime).
func checkRenewAt(t *testing.T, what string, leaf *x509.Certificate, at time.Time) {
	t.Helper()
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	latest := leaf.NotBefore.Add(life / 4)
	earliest := latest.Add(-life / 20)
	if at.Before(earliest) || at.After(latest) {
		t.Fatalf("%s (%v to %v): renewal at %v, want between %v and %v", what, leaf.NotBefore, leaf.NotAfter, at, earliest, latest)
	}
}

// waitSignals waits for n signals.
func waitSignals(t *testing.T, c <-chan os.Signal, n int) {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for i := 0; i < n; i++ {
		select {
		case <-c:
		case <-timeout:
			t.Fatalf("got %d of %d signals from the agent", i, n)
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
