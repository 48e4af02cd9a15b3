package policy

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

const basicPolicies = `
@id("readers-search")
permit(principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource == Mcp::Tool::"search");

permit(principal in Mcp::Role::"reader", action in [Mcp::Action::"tools/list", Mcp::Action::"resources/list"], resource);

permit(principal, action == Mcp::Action::"resources/read", resource is Mcp::Resource)
when { resource.uri like "file:///docs/*" && principal.attrs has team };

@id("payments-only")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"refund")
when { principal.attrs.team == "payments" && context.hour >= 9 && context.hour < 17 };

@id("no-refund-for-interns")
forbid(principal in Mcp::Role::"intern", action, resource == Mcp::Tool::"refund");

permit(principal == Mcp::Client::"spiffe://example.org/client/bob", action == Mcp::Action::"prompts/get", resource)
unless { context.source_address.isInRange(ip("10.0.0.0/8")) };
`

func TestAuthorize(t *testing.T) {
	s := compileString(t, basicPolicies)
	alice := principal(t, "spiffe://example.org/client/alice", []string{"reader"}, map[string]string{"team": "payments"})
	intern := principal(t, "spiffe://example.org/client/ivan", []string{"reader", "intern"}, map[string]string{"team": "payments"})
	bob := principal(t, "spiffe://example.org/client/bob", nil, nil)
	tests := []struct {
		name     string
		p        *Principal
		r        Request
		allow    bool
		policies []string
		reason   string
	}{
		{"initialize", bob, Request{Method: "initialize"}, true, nil, "always allowed"},
		{"ping", bob, Request{Method: "ping"}, true, nil, "always allowed"},
		{"notification", bob, Request{Method: "notifications/initialized"}, true, nil, "always allowed"},
		{"role permit", alice, Request{Method: "tools/call", Target: "search"}, true, []string{"readers-search"}, "permitted"},
		{"other tool", alice, Request{Method: "tools/call", Target: "delete"}, false, nil, "no policy permits"},
		{"no role", bob, Request{Method: "tools/call", Target: "search"}, false, nil, "no policy permits"},
		{"list", alice, Request{Method: "tools/list"}, true, []string{"test.cedar:5"}, "permitted"},
		{"list not permitted", alice, Request{Method: "prompts/list"}, false, nil, "no policy permits"},
		{"like", alice, Request{Method: "resources/read", Target: "file:///docs/a.md"}, true, []string{"test.cedar:7"}, "permitted"},
		{"like miss", alice, Request{Method: "resources/read", Target: "file:///etc/passwd"}, false, nil, "no policy permits"},
		{"business hours", alice, Request{Method: "tools/call", Target: "refund", Time: t0}, true, []string{"payments-only"}, "permitted"},
		{"after hours", alice, Request{Method: "tools/call", Target: "refund", Time: t0.Add(8 * time.Hour)}, false, nil, "no policy permits"},
		{"forbid beats permit", intern, Request{Method: "tools/call", Target: "refund", Time: t0}, false, []string{"no-refund-for-interns"}, "forbidden"},
		{"unless source", bob, Request{Method: "prompts/get", Target: "summarize", Source: netip.MustParseAddr("192.0.2.1")}, true, []string{"test.cedar:17"}, "permitted"},
		{"unless source inside", bob, Request{Method: "prompts/get", Target: "summarize", Source: netip.MustParseAddr("10.1.2.3")}, false, nil, "no policy permits"},
		{"unknown method", alice, Request{Method: "x/unknown"}, false, nil, "no policy permits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.r.Time.IsZero() {
				tt.r.Time = t0
			}
			d := s.Authorize(tt.p, tt.r)
			if d.Allow != tt.allow || !reflect.DeepEqual(d.Policies, tt.policies) || d.Reason != tt.reason {
				t.Errorf("Authorize = %v %v %q, want allow=%v policies=%v reason=%q", d.Allow, d.Policies, d.Reason, tt.allow, tt.policies, tt.reason)
			}
			if ref := s.reference(tt.p, tt.r); ref.Allow != d.Allow || !reflect.DeepEqual(ref.Policies, d.Policies) {
				t.Errorf("reference = %+v, indexed = %+v", ref, d)
			}
		})
	}
}
