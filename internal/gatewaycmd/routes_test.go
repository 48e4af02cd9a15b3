package gatewaycmd

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/mcpca/mcpca/internal/testca"
)

// resource: and audit: in --config: relative audit paths are the config
// file's, and a route's resource without --token-issuer is refused before
// anything is opened.
func TestRoutesAuditResource(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte("routes:\n"+
		"  - path: /a/mcp\n    upstream: http://127.0.0.1:1/mcp\n    policy: a.cedar\n    audit: a-audit.log\n"+
		"  - path: /b/mcp\n    upstream: http://127.0.0.1:1/mcp\n    policy: b.cedar\n    resource: https://gw.example.com/b/mcp\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	routes, err := loadRoutes(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if routes[0].Audit != filepath.Join(dir, "a-audit.log") || routes[1].Audit != "" || routes[1].Resource != "https://gw.example.com/b/mcp" {
		t.Fatalf("routes %+v", routes)
	}
	o := &options{config: cfg, path: "/mcp", poll: 1, readHeaderTimeout: 1, idleTimeout: 1, apikeyRefresh: 1}
	want := "--config " + cfg + ": route 2: resource needs --token-issuer (the authorization servers whose tokens name it)"
	if err := Run(context.Background(), o, io.Discard, nil); err == nil || err.Error() != want {
		t.Fatalf("Run: %v; want %q", err, want)
	}
}

// A route's audit: that cannot be opened stops the gateway at start with
// the route and the file named.
func TestRouteAuditRefused(t *testing.T) {
	dir := t.TempDir()
	ca := testca.NewCA(t, "acme.test")
	cert, key := ca.CreateSVID("spiffe://acme.test/server/gateway").WriteFiles(t, dir)
	root := filepath.Join(dir, "root.pem")
	pol := filepath.Join(dir, "a.cedar")
	cfg := filepath.Join(dir, "gateway.yaml")
	for name, b := range map[string]string{root: string(ca.RootsPEM()), pol: "permit (principal, action, resource);\n",
		cfg: "routes:\n  - path: /a/mcp\n    upstream: http://127.0.0.1:1/mcp\n    policy: a.cedar\n    audit: no-such-dir/audit.log\n"} {
		if err := os.WriteFile(name, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := &options{config: cfg, listen: "127.0.0.1:0", path: "/mcp", cert: cert, key: key, root: root,
		poll: 1e9, readHeaderTimeout: 1e9, idleTimeout: 1e9, apikeyRefresh: 1e9}
	err := Run(context.Background(), o, io.Discard, nil)
	want := "route /a/mcp: audit: opening audit log: open " + filepath.Join(dir, "no-such-dir", "audit.log") + ": no such file or directory"
	if err == nil || err.Error() != want {
		t.Fatalf("Run: %v; want %q", err, want)
	}
}
