package policy

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go/types"
)

func TestToolArguments(t *testing.T) {
	src := `
@id("small-refunds")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"refund")
when { context has args && context.args has amount && context.args.amount <= 100 && context.args.currency == "EUR" };
@id("ticket-tags")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"ticket")
when { context.args.tags.contains("urgent") && context.args.meta.priority.greaterThan(decimal("1.5")) && context.args.dry_run };
`
	s := compileString(t, src, WithToolArguments())
	p := principal(t, "spiffe://td/client/a", nil, nil)
	var args map[string]any
	decode := func(js string) map[string]any {
		d := json.NewDecoder(strings.NewReader(js))
		d.UseNumber()
		args = nil
		if err := d.Decode(&args); err != nil {
			t.Fatal(err)
		}
		return args
	}
	tests := []struct {
		tool string
		args map[string]any
		want bool
	}{
		{"refund", map[string]any{"amount": 50.0, "currency": "EUR"}, true},
		{"refund", map[string]any{"amount": 150, "currency": "EUR"}, false},
		{"refund", decode(`{"amount": 100, "currency": "EUR"}`), true},
		{"refund", decode(`{"amount": 100.5, "currency": "EUR"}`), false},
		{"refund", nil, false},
		{"ticket", decode(`{"tags": ["urgent", "x"], "meta": {"priority": 2.25}, "dry_run": true, "ignored": null}`), true},
		{"ticket", map[string]any{"tags": []any{"low"}, "meta": map[string]any{"priority": int64(3)}, "dry_run": true}, false},
	}
	for _, tt := range tests {
		d := s.Authorize(p, Request{Method: "tools/call", Target: tt.tool, Args: tt.args, Time: t0})
		if d.Allow != tt.want {
			t.Errorf("%s %v: allow = %v, want %v (errors %v)", tt.tool, tt.args, d.Allow, tt.want, d.Errors)
		}
		if ref := s.reference(p, Request{Method: "tools/call", Target: tt.tool, Args: tt.args, Time: t0}); ref.Allow != d.Allow {
			t.Errorf("reference disagrees")
		}
	}
	// Without the option the arguments never reach the context.
	rec := newConfig(nil).buildContext(&Request{Args: map[string]any{"a": "b"}}, t0, AuthMTLS)
	if _, ok := rec.Get("args"); ok {
		t.Error("args in context without WithToolArguments")
	}
}

func TestArgValues(t *testing.T) {
	deep := map[string]any{}
	cur := deep
	for range maxArgDepth + 5 {
		next := map[string]any{}
		cur["n"] = next
		cur = next
	}
	for _, tt := range []struct {
		in   any
		want string
		ok   bool
	}{
		{"s", `"s"`, true},
		{true, "true", true},
		{3, "3", true},
		{int64(-4), "-4", true},
		{2.0, "2", true},
		{2.5, `decimal("2.5")`, true},
		{json.Number("7"), "7", true},
		{json.Number("7.25"), `decimal("7.25")`, true},
		{json.Number("1e400"), "", false},
		{1e300, "", false},
		{nil, "", false},
		{struct{}{}, "", false},
	} {
		v, ok := toValue(tt.in, 0)
		if ok != tt.ok || (ok && string(v.MarshalCedar()) != tt.want) {
			t.Errorf("toValue(%#v) = %v %v, want %s %v", tt.in, v, ok, tt.want, tt.ok)
		}
	}
	if v, ok := toValue(deep, 0); !ok || strings.Count(string(v.MarshalCedar()), "n") > maxArgDepth+1 {
		t.Errorf("deep value not bounded: %v", v)
	}
}

func TestEntityModel(t *testing.T) {
	srv := principal(t, "spiffe://td/server/gw", []string{"gateway", "gateway"}, map[string]string{"env": "prod"})
	if srv.UID() != types.NewEntityUID(TypeServer, "spiffe://td/server/gw") {
		t.Errorf("server principal UID %v", srv.UID())
	}
	if len(srv.parents) != 2 || srv.parents[0] != types.NewEntityUID(TypeRole, "gateway") || srv.parents[1] != types.NewEntityUID(TypeTrustDomain, "td") {
		t.Errorf("parents %v", srv.parents)
	}
	attrs := string(srv.entity.Attributes.MarshalCedar())
	for _, want := range []string{`"id":"spiffe://td/server/gw"`, `"kind":"server"`, `"name":"gw"`, `"trust_domain":"td"`, `"serial":"1234"`, `"attrs":{"env":"prod"}`, `"roles":["gateway"]`, `"not_after":datetime("2026-03-05T09:30:00.000Z")`} {
		if !strings.Contains(strings.ReplaceAll(attrs, " ", ""), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("principal attributes %s lack %s", attrs, want)
		}
	}
	for method, want := range map[string]types.EntityType{
		"tools/call": TypeTool, "resources/read": TypeResource, "resources/subscribe": TypeResource,
		"resources/unsubscribe": TypeResource, "prompts/get": TypePrompt, "tools/list": TypeServer, "logging/setLevel": TypeServer,
	} {
		if got := TargetType(method); got != want {
			t.Errorf("TargetType(%s) = %s, want %s", method, got, want)
		}
	}
	r := Request{Method: "tools/list", Target: "ignored"}
	if r.resourceUID() != types.NewEntityUID(TypeServer, SelfID) {
		t.Errorf("tools/list resource %v", r.resourceUID())
	}
	r = Request{Method: "completion/complete", TargetType: TypeResource, Target: "file:///t/{x}"}
	if r.resourceUID() != types.NewEntityUID(TypeResource, "file:///t/{x}") {
		t.Errorf("completion resource %v", r.resourceUID())
	}
}

func TestContext(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	cfg := newConfig([]Option{WithTimeZone(ny)})
	at := time.Date(2026, 3, 2, 3, 4, 5, 678e6, time.UTC) // Monday 03:04 UTC = Sunday 22:04 in New York
	rec := cfg.buildContext(&Request{Source: netip.MustParseAddr("::ffff:192.0.2.1")}, at, AuthMTLS)
	got := strings.ReplaceAll(string(rec.MarshalCedar()), " ", "")
	want := `{"auth":"mtls","hour":22,"minute":4,"now":datetime("2026-03-02T03:04:05.678Z"),"source_address":ip("192.0.2.1"),"weekday":0}`
	if got != want {
		t.Errorf("context\n got %s\nwant %s", got, want)
	}
	rec = newConfig(nil).buildContext(&Request{}, at, AuthMTLS)
	if v, _ := rec.Get("source_address"); string(v.MarshalCedar()) != `ip("0.0.0.0")` {
		t.Errorf("unknown source = %s", v.MarshalCedar())
	}
	// Requests are stamped with the clock, to the second, per principal.
	s := compileString(t, `permit(principal, action == Mcp::Action::"tools/list", resource) when { context.now == datetime("2026-03-04T10:30:00Z") };`,
		WithClock(fakeNow(t0.Add(400*time.Millisecond))))
	if d := s.Authorize(principal(t, "spiffe://td/client/a", nil, nil), Request{Method: "tools/list"}); !d.Allow {
		t.Errorf("clock time not used: %v %v", d, d.Errors)
	}
}

// One method table: what the adapter allows without a policy and how it
// filters lists is what `mcpca policy explain` uses.
func TestMethodTable(t *testing.T) {
	for _, m := range []string{"initialize", "server/discover", "ping", "notifications/initialized", "notifications/cancelled"} {
		if !AlwaysAllowed(m) {
			t.Errorf("%s is not always allowed", m)
		}
	}
	for _, m := range []string{"tools/call", "tools/list", "resources/read", "subscriptions/listen", "initialized", "server/discoverx"} {
		if AlwaysAllowed(m) {
			t.Errorf("%s is always allowed", m)
		}
	}
	for list, action := range map[string]string{"tools/list": "tools/call", "resources/list": "resources/read", "resources/templates/list": "resources/read", "prompts/list": "prompts/get"} {
		if got, ok := ListAction(list); !ok || got != action {
			t.Errorf("ListAction(%s) = %q %v, want %q", list, got, ok, action)
		}
	}
	if _, ok := ListAction("tools/call"); ok {
		t.Error("tools/call is a list")
	}
}
