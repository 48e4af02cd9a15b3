package gatewaycmd

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
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
