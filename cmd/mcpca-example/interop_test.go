package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/internal/nodetest"
)

// TestInteropNode connects the official TypeScript MCP SDK
// (@modelcontextprotocol/sdk, from npm) to the example server with an
// mcpca client certificate. It needs node and npm, and npm must be able to
// install the packages of scripts/interop-node (internal/nodetest: once,
// cached); otherwise it skips and says why, or fails under
// MCPCA_REQUIRE_NODE=1 (CI). scripts/interop-node/run.sh runs it verbosely.
func TestInteropNode(t *testing.T) {
	work, node := nodetest.Install(t, "interop-node", filepath.Join("..", "..", "scripts", "interop-node"), "interop.mjs")

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
