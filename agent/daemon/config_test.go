package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/agent"
)

const goodConfig = `
health_addr: 127.0.0.1:9465
identities:
  - name: web
    ca_url: https://ca.example.test:9000
    root: /etc/mcpca/root.pem
    cert: /etc/mcpca/web/cert.pem
    key: /etc/mcpca/web/key.pem
    bundle: /etc/mcpca/web/bundle.pem
    token_file: /etc/mcpca/web/token
    renew_at: 0.75
    rekey: true
    hooks:
      - exec: [systemctl, reload, nginx]
        timeout: 10s
      - pid_file: /run/app.pid
        signal: USR1
  - name: api
    ca_url: https://ca.example.test:9000
    root: /etc/mcpca/root.pem
    cert: /etc/mcpca/api/cert.pem
    key: /etc/mcpca/api/key.pem
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.HealthAddr != "127.0.0.1:9465" || c.FailureThreshold != DefaultFailureThreshold || len(c.Identities) != 2 {
		t.Fatalf("%+v", c)
	}
	web, api := c.Identities[0], c.Identities[1]
	if web.RenewAt != 0.75 || !web.Rekey || len(web.Hooks) != 2 || time.Duration(web.Hooks[0].Timeout) != 10*time.Second {
		t.Fatalf("web %+v", web)
	}
	if api.RenewAt != agent.DefaultRenewAt {
		t.Fatalf("api renew_at %v", api.RenewAt)
	}
	hooks := web.hooks()
	if cmd, ok := hooks[0].(*agent.Command); !ok || strings.Join(cmd.Argv, " ") != "systemctl reload nginx" || cmd.Env[0] != "MCPCA_IDENTITY=web" {
		t.Fatalf("hook 1 %#v", hooks[0])
	}
	if sig, ok := hooks[1].(*agent.Signal); !ok || sig.PIDFile != "/run/app.pid" || sig.Signal.String() != "user defined signal 1" {
		t.Fatalf("hook 2 %#v", hooks[1])
	}
}

func TestParseConfigErrors(t *testing.T) {
	id := "  - name: web\n    ca_url: https://ca:9000\n    root: r.pem\n    cert: c.pem\n    key: k.pem\n"
	tests := []struct {
		name, yaml, want string
	}{
		{"empty", "", "agent: no identities"},
		{"no identities", "health_addr: 127.0.0.1:1\n", "agent: no identities"},
		{"unknown key", "identities:\n" + id + "    renew_after: 0.5\n", "agent: line 7: field renew_after not found in type daemon.IdentityConfig"},
		{"not yaml", "identities: [", "agent: yaml: line 1: did not find expected node content"},
		{"no name", "identities:\n  - ca_url: https://x\n", "agent: identity 1: name is required"},
		{"twice", "identities:\n" + id + id, `agent: identity "web" appears twice`},
		{"http", strings.Replace("identities:\n"+id, "https://ca:9000", "http://ca:9000", 1), `agent: identity "web": ca_url "http://ca:9000" must start with https://`},
		{"no root", strings.Replace("identities:\n"+id, "    root: r.pem\n", "", 1), `agent: identity "web": root is required (the CA's root certificate file)`},
		{"no key", strings.Replace("identities:\n"+id, "    key: k.pem\n", "", 1), `agent: identity "web": cert and key are required`},
		{"same file", strings.Replace("identities:\n"+id, "key: k.pem", "key: c.pem", 1), `agent: identity "web": cert and key must be different files (use combined for a single file)`},
		{"renew_at", "identities:\n" + id + "    renew_at: 1.5\n", `agent: identity "web": renew_at 1.5 is not between 0 and 1`},
		{"hook both", "identities:\n" + id + "    hooks:\n      - exec: [true]\n        signal_pid: 1\n", `agent: identity "web": hook 1: set exactly one of exec, signal_pid or pid_file`},
		{"hook none", "identities:\n" + id + "    hooks:\n      - timeout: 1s\n", `agent: identity "web": hook 1: set exactly one of exec, signal_pid or pid_file`},
		{"bad signal", "identities:\n" + id + "    hooks:\n      - signal_pid: 1\n        signal: RELOAD\n", `agent: identity "web": hook 1: unknown signal "RELOAD"`},
		{"bad timeout", "identities:\n" + id + "    hooks:\n      - exec: [true]\n        timeout: soon\n", `agent: line 9: time: invalid duration "soon"`},
		{"public health", "health_addr: 0.0.0.0:9465\nidentities:\n" + id, `agent: health address "0.0.0.0:9465" is not a loopback address (use 127.0.0.1:PORT or [::1]:PORT)`},
		{"threshold", "failure_threshold: -1\nidentities:\n" + id, "agent: failure_threshold -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v\nwant  %s", err, tt.want)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.yaml")
	if _, err := LoadConfig(p); err == nil || err.Error() != "agent: reading config: open "+p+": no such file or directory" {
		t.Fatalf("err = %v", err)
	}
	os.WriteFile(p, []byte("identities: []\n"), 0o644)
	if _, err := LoadConfig(p); err == nil || err.Error() != "agent: config "+p+": no identities" {
		t.Fatalf("err = %v", err)
	}
	os.WriteFile(p, []byte(goodConfig), 0o644)
	if _, err := LoadConfig(p); err != nil {
		t.Fatal(err)
	}
}

// The example configuration shipped in scripts/ stays valid.
func TestExampleConfigParses(t *testing.T) {
	c, err := LoadConfig(filepath.Join("..", "..", "scripts", "agent.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Identities) != 2 || c.Identities[0].Name != "web" || c.Identities[0].RenewAt != 0.66 || c.HealthAddr != "127.0.0.1:9465" {
		t.Fatalf("%+v", c)
	}
}
