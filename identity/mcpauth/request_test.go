package mcpauth

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/internal/clock"
)

// Each method is decided on the right target.
func TestRequestTargets(t *testing.T) {
	g := &Guard{cfg: config{clock: clock.Real{}, toolArgs: true}}
	c := &caller{source: netip.MustParseAddr("127.0.0.1")}
	for _, tc := range []struct {
		method string
		req    mcp.Request
		target string
		typ    types.EntityType
		args   map[string]any
	}{
		{"tools/call", &mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{Name: "search", Arguments: json.RawMessage(`{"q":"x","n":2}`)}}, "search", "", map[string]any{"q": "x", "n": 2.0}},
		{"tools/call", &mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{Name: "search", Arguments: json.RawMessage(`[1]`)}}, "search", "", map[string]any{}},
		{"resources/read", &mcp.ReadResourceRequest{Params: &mcp.ReadResourceParams{URI: "file:///a"}}, "file:///a", "", nil},
		{"resources/subscribe", &mcp.SubscribeRequest{Params: &mcp.SubscribeParams{URI: "file:///b"}}, "file:///b", "", nil},
		{"resources/unsubscribe", &mcp.UnsubscribeRequest{Params: &mcp.UnsubscribeParams{URI: "file:///c"}}, "file:///c", "", nil},
		{"prompts/get", &mcp.GetPromptRequest{Params: &mcp.GetPromptParams{Name: "summarize"}}, "summarize", "", nil},
		{"completion/complete", &mcp.CompleteRequest{Params: &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "summarize"}}}, "summarize", "Mcp::Prompt", nil},
		{"completion/complete", &mcp.CompleteRequest{Params: &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/resource", URI: "file:///{x}"}}}, "file:///{x}", "Mcp::Resource", nil},
		{"tools/list", &mcp.ListToolsRequest{Params: &mcp.ListToolsParams{}}, "", "", nil},
	} {
		r := g.request(tc.method, tc.req, c)
		if r.Method != tc.method || r.Target != tc.target || r.TargetType != tc.typ || !reflect.DeepEqual(r.Args, tc.args) || r.Source != c.source || r.Time.IsZero() {
			t.Errorf("%s %T: got %+v", tc.method, tc.req.GetParams(), r)
		}
	}
}
