// Package nodetest prepares the npm packages that the interop tests run
// (the TypeScript MCP SDK, the reference servers), once per package.json,
// in a cache directory shared with `make demo`.
//
// Without node, npm or the registry a test skips and says why, unless
// MCPCA_REQUIRE_NODE=1 (set by .ci/run): then it fails, so CI never
// passes by skipping.
package nodetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Install copies files (package.json among them) from srcDir into the
// cache directory $MCPCA_NODE_CACHE/NAME-HASH (default the user cache
// directory's mcpca), HASH taken of package.json, installs the packages
// there once, and returns that directory and the node binary.
func Install(t *testing.T, name, srcDir string, files ...string) (work, node string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, name, "node is not installed")
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		unavailable(t, name, "npm is not installed")
	}
	pkg, err := os.ReadFile(filepath.Join(srcDir, "package.json"))
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
	work = filepath.Join(cache, name+"-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(work, 0o755); err != nil {
		unavailable(t, name, "cannot create the npm cache directory: "+err.Error())
	}
	for _, f := range append([]string{"package.json"}, files...) {
		b, err := os.ReadFile(filepath.Join(srcDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	done := filepath.Join(work, "node_modules", ".mcpca-installed")
	if _, err := os.Stat(done); err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error",
			"--fetch-retries=1", "--fetch-timeout=30000")
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			unavailable(t, name, "npm install failed (offline, or the registry is unreachable): "+err.Error()+"\n"+string(out))
		}
		if err := os.WriteFile(done, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return work, node
}

// unavailable skips the test with why, or fails it when node is required.
func unavailable(t *testing.T, name, why string) {
	t.Helper()
	if os.Getenv("MCPCA_REQUIRE_NODE") == "1" {
		t.Fatalf("%s FAILED: %s (MCPCA_REQUIRE_NODE=1: CI runs this test, it does not skip it)", name, why)
	}
	t.Skipf("%s SKIPPED: %s", name, why)
}
