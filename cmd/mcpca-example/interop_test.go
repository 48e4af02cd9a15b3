package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInteropNode connects the official TypeScript MCP SDK
// (@modelcontextprotocol/sdk, from npm) to the example server with an
// mcpca client certificate. It needs node and npm, and npm must be able to
// install the packages of scripts/interop-node (once: they are cached in
// $MCPCA_NODE_CACHE, default the user cache directory); otherwise it skips
// and says why. scripts/interop-node/run.sh runs it verbosely.
func TestInteropNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("interop-node SKIPPED: node is not installed")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("interop-node SKIPPED: npm is not installed")
	}
	src := filepath.Join("..", "..", "scripts", "interop-node")
	pkg, err := os.ReadFile(filepath.Join(src, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(src, "interop.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pkg)
	cache := os.Getenv("MCPCA_NODE_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		cache = filepath.Join(base, "mcpca")
	}
	work := filepath.Join(cache, "interop-node-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Skipf("interop-node SKIPPED: cannot create the npm cache directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(work, "package.json"), pkg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "interop.mjs"), script, 0o644); err != nil {
		t.Fatal(err)
	}
	done := filepath.Join(work, "node_modules", ".mcpca-installed")
	if _, err := os.Stat(done); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error",
			"--fetch-retries=1", "--fetch-timeout=30000")
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("interop-node SKIPPED: npm install failed (offline, or the registry is unreachable): %v\n%s", err, out)
		}
		if err := os.WriteFile(done, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	e := startExample(t)
	rc, rk := filepath.Join(e.dir, "reader.crt"), filepath.Join(e.dir, "reader.key")
	writePair(t, e.reader, rc, rk)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "interop.mjs")
	cmd.Dir = work
	cmd.Env = append(os.Environ(),
		"MCP_URL=https://"+e.addr+"/mcp", "CERT="+rc, "KEY="+rk, "CA="+e.rootFile,
		"EXPECT_TOOLS=get_weather,search_docs,whoami", "DENIED_TOOL=delete_record")
	out, err := cmd.CombinedOutput()
	t.Logf("node interop.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the TypeScript SDK client failed: %v", err)
	}
	for _, want := range []string{
		"ok connected: server mcpca-example",
		"ok tools/list: get_weather, search_docs, whoami",
		"ok tools/call search_docs:",
		"ok tools/call whoami: spiffe://acme.test/client/alice roles=reader",
		"ok tools/call delete_record: denied (-32010 MCP error -32010: permission denied)",
		"ok tools/call no_such_tool: denied (-32010 MCP error -32010: permission denied)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
