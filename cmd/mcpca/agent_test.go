package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
}
