package mcpauth_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/internal/mcpexample"
)

// The tests here run without a CA (internal/testca); the end-to-end tests
// against the real CA are in internal/e2e.

var starterPolicy = filepath.Join("..", "..", "scripts", "policies", "mcp-example.cedar")

const listTools = `{"jsonrpc":"2.0","id":99,"method":"tools/list"}`

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func call(t testing.TB, cs *mcp.ClientSession, tool string, args map[string]any) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return "", err
	}
	var out []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			out = append(out, tc.Text)
		}
	}
	if res.IsError {
		return "", errors.New("tool error: " + strings.Join(out, " "))
	}
	return strings.Join(out, " "), nil
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// callBody is one tools/call of the read-only search_docs tool, which the
// reader may call.
var callBody = fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q,"arguments":{"query":"roles"}}}`, mcpexample.ToolSearchDocs)
