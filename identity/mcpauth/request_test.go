package mcpauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/policy"
)

// Each method is decided on the right target.
func TestRequestTargets(t *testing.T) {
	g := &Guard{cfg: config{clock: clock.Real{}, toolArgs: true}}
	c := &Caller{source: netip.MustParseAddr("127.0.0.1")}
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
		r := g.request(tc.method, tc.req.GetParams(), c)
		if r.Method != tc.method || r.Target != tc.target || r.TargetType != tc.typ || !reflect.DeepEqual(r.Args, tc.args) || r.Source != c.source || r.Time.IsZero() {
			t.Errorf("%s %T: got %+v", tc.method, tc.req.GetParams(), r)
		}
	}
}

// subscriptions/listen is open to every caller, but only for the resources
// the policy lets it subscribe to.
func TestListenFiltersResources(t *testing.T) {
	set, err := policy.Load([]string{"../../scripts/policies/mcp-example.cedar"})
	if err != nil {
		t.Fatal(err)
	}
	var auditBuf bytes.Buffer
	g := &Guard{authz: set, cfg: config{clock: clock.Real{}, audit: audit.New(&auditBuf)}}
	id, err := identity.ParseID("spiffe://acme.test/client/alice")
	if err != nil {
		t.Fatal(err)
	}
	g.reqs.Store("r1", &Caller{principal: policy.NewPrincipal(&identity.Identity{ID: id, Roles: []string{"reader"}, Serial: big.NewInt(1)})})
	params := &mcp.SubscriptionsListenParams{Notifications: &mcp.NotificationSubscriptions{
		ToolsListChanged:      true,
		ResourceSubscriptions: []string{"docs://handbook", "file:///secrets/keys.txt", "file:///docs/a.md"},
	}}
	req := &mcp.ServerRequest[*mcp.SubscriptionsListenParams]{Params: params, Extra: &mcp.RequestExtra{Header: http.Header{refHeader: {"r1"}}}}
	var seen *mcp.SubscriptionsListenParams
	h := g.Middleware()(func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		seen = req.GetParams().(*mcp.SubscriptionsListenParams)
		return nil, nil
	})
	if _, err := h(context.Background(), methodListen, req); err != nil {
		t.Fatal(err)
	}
	if want := []string{"docs://handbook", "file:///docs/a.md"}; seen == nil || !reflect.DeepEqual(seen.Notifications.ResourceSubscriptions, want) || !seen.Notifications.ToolsListChanged {
		t.Fatalf("listen params: %+v, want resources %v", seen.Notifications, want)
	}
	log := auditBuf.String()
	if n, err := audit.Verify(strings.NewReader(log)); err != nil || n != 3 || !strings.Contains(log, `"target":"file:///secrets/keys.txt","decision":"deny","policies":["no-secrets"]`) {
		t.Fatalf("audit (%d, %v):\n%s", n, err, log)
	}
}

// With an audit log that cannot be written, listen keeps no resource
// subscription (each one's decision would be unrecorded) but still opens.
func TestListenFailsClosedWithoutAudit(t *testing.T) {
	set, err := policy.Load([]string{"../../scripts/policies/mcp-example.cedar"})
	if err != nil {
		t.Fatal(err)
	}
	g := &Guard{authz: set, cfg: config{clock: clock.Real{}, audit: audit.New(failingWriter{}), logger: slog.New(slog.DiscardHandler)}}
	id, _ := identity.ParseID("spiffe://acme.test/client/alice")
	g.reqs.Store("r1", &Caller{principal: policy.NewPrincipal(&identity.Identity{ID: id, Roles: []string{"reader"}, Serial: big.NewInt(1)})})
	params := &mcp.SubscriptionsListenParams{Notifications: &mcp.NotificationSubscriptions{ResourceSubscriptions: []string{"docs://handbook"}}}
	req := &mcp.ServerRequest[*mcp.SubscriptionsListenParams]{Params: params, Extra: &mcp.RequestExtra{Header: http.Header{refHeader: {"r1"}}}}
	h := g.Middleware()(func(context.Context, string, mcp.Request) (mcp.Result, error) { return nil, nil })
	if _, err := h(context.Background(), methodListen, req); err != nil {
		t.Fatal(err)
	}
	if got := params.Notifications.ResourceSubscriptions; len(got) != 0 {
		t.Fatalf("kept subscriptions %v whose decisions were not audited", got)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// A decision that cannot be audited: the handler is not reached (unless
// failOpen), and the failure is logged.
func TestAuditFailureLogged(t *testing.T) {
	set, err := policy.Load([]string{"../../scripts/policies/mcp-example.cedar"})
	if err != nil {
		t.Fatal(err)
	}
	for _, failOpen := range []bool{false, true} {
		var logs bytes.Buffer
		g := &Guard{authz: set, cfg: config{clock: clock.Real{}, audit: audit.New(failingWriter{}), failOpen: failOpen,
			logger: slog.New(slog.NewTextHandler(&logs, nil))}}
		id, _ := identity.ParseID("spiffe://acme.test/client/alice")
		g.reqs.Store("r1", &Caller{principal: policy.NewPrincipal(&identity.Identity{ID: id, Roles: []string{"reader"}, Serial: big.NewInt(1)})})
		req := &mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{Name: "search_docs"}, Extra: &mcp.RequestExtra{Header: http.Header{refHeader: {"r1"}}}}
		called := false
		h := g.Middleware()(func(context.Context, string, mcp.Request) (mcp.Result, error) { called = true; return nil, nil })
		_, err := h(context.Background(), "tools/call", req)
		want := `msg="mcpauth: writing the audit log; refusing the request" error="audit: writing audit log: disk full"`
		if failOpen {
			want = `msg="mcpauth: writing the audit log; serving the request (WithAuditFailOpen)" error="audit: writing audit log: disk full"`
			if err != nil || !called {
				t.Fatalf("fail open: %v, reached %v", err, called)
			}
		} else if err == nil || err.Error() != errAuditFailed().Error() || called {
			t.Fatalf("allowed call that could not be audited: %v, reached %v", err, called)
		}
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log: %s", logs.String())
		}
	}
}
