package policy

import (
	"net/netip"
	"testing"
	"time"
)

// The per-principal decision cache must never return a decision for a
// request that differs in anything the decision depends on.
func TestDecisionCacheFollowsEveryInput(t *testing.T) {
	src := `
@id("hours") permit (principal in Mcp::Role::"support", action == Mcp::Action::"tools/call", resource == Mcp::Tool::"lookup")
when { context.hour >= 9 && context.hour < 17 };
@id("lan") forbid (principal, action, resource) unless { context.source_address.isLoopback() };
`
	s := compileString(t, src)
	p := principal(t, "spiffe://a.test/client/c", []string{"support"}, nil)
	lo := netip.MustParseAddr("127.0.0.1")
	in := time.Date(2026, 11, 26, 16, 59, 59, 0, time.UTC)
	req := Request{Method: "tools/call", Target: "lookup", Source: lo, Time: in}
	if d := s.Authorize(p, req); !d.Allow {
		t.Fatalf("16:59:59: %+v", d)
	}
	if d := s.Authorize(p, req); !d.Allow || d.Policies[0] != "hours" {
		t.Fatalf("same request again: %+v", d)
	}
	late := req
	late.Time = in.Add(time.Second)
	if d := s.Authorize(p, late); d.Allow {
		t.Fatalf("17:00:00 reused the 16:59:59 decision: %+v", d)
	}
	other := req
	other.Target = "delete"
	if d := s.Authorize(p, other); d.Allow {
		t.Fatalf("another tool reused the decision: %+v", d)
	}
	remote := req
	remote.Source = netip.MustParseAddr("192.0.2.1")
	if d := s.Authorize(p, remote); d.Allow || d.Policies[0] != "lan" {
		t.Fatalf("another source reused the decision: %+v", d)
	}
	// A new policy set (a reload) never sees the old set's decisions.
	s2 := compileString(t, `@id("none") forbid (principal, action, resource);`)
	if d := s2.Authorize(p, req); d.Allow {
		t.Fatalf("a reloaded set reused the old decision: %+v", d)
	}
	if d := s.Authorize(p, req); !d.Allow {
		t.Fatalf("back on the first set: %+v", d)
	}
}
