package policy

import (
	"fmt"
	"net/netip"
	"slices"
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

// The filtering decisions a set remembers must never answer for a request
// that differs in anything the decision depends on: another principal,
// another action, another set (a reload), and, when a policy of the
// action reads the context, another second or source.
func TestFilterCacheFollowsEveryInput(t *testing.T) {
	src := `
@id("hours") permit (principal in Mcp::Role::"support", action == Mcp::Action::"tools/call", resource)
when { resource.name like "lookup*" && context.hour >= 9 && context.hour < 17 };
@id("lan") forbid (principal, action == Mcp::Action::"tools/call", resource) unless { context.source_address.isLoopback() };
@id("prompts") permit (principal in Mcp::Role::"support", action == Mcp::Action::"prompts/get", resource)
when { resource.name like "p*" };
`
	s := compileString(t, src)
	alice := principal(t, "spiffe://a.test/client/alice", []string{"support"}, nil)
	bob := principal(t, "spiffe://a.test/client/bob", nil, nil)
	lo := netip.MustParseAddr("127.0.0.1")
	in := time.Date(2026, 11, 26, 16, 59, 59, 0, time.UTC)
	names := []string{"lookup", "lookup2", "delete", "p1"}
	tools := Request{Method: "tools/call", Source: lo, Time: in}
	want := func(p *Principal, r Request, want ...string) {
		t.Helper()
		for range 2 { // the second time from what the set remembers
			if got := s.Filter(p, r, names); !slices.Equal(got, want) {
				t.Fatalf("Filter(%s, %s at %s from %s) = %q, want %q", p.UID().ID, r.Method, r.Time.Format(time.TimeOnly), r.Source, got, want)
			}
		}
	}
	want(alice, tools, "lookup", "lookup2")
	want(bob, tools)
	late := tools
	late.Time = in.Add(time.Second)
	want(alice, late)
	remote := tools
	remote.Source = netip.MustParseAddr("192.0.2.1")
	want(alice, remote)
	want(alice, tools, "lookup", "lookup2")
	// prompts/get reads no context: its decisions hold across seconds.
	if s.idx.readsContext("prompts/get") || !s.idx.readsContext("tools/call") {
		t.Fatalf("readsContext: prompts/get %v, tools/call %v", s.idx.readsContext("prompts/get"), s.idx.readsContext("tools/call"))
	}
	want(alice, Request{Method: "prompts/get", Time: in}, "p1")
	want(alice, Request{Method: "prompts/get", Time: in.Add(time.Hour)}, "p1")
	want(bob, Request{Method: "prompts/get", Time: in})
	// A new set (a reload) does not see the old set's decisions.
	s2 := compileString(t, `@id("all") permit (principal, action, resource);`)
	if got := s2.Filter(alice, tools, names); !slices.Equal(got, names) {
		t.Fatalf("a reloaded set: %q", got)
	}
	// A renewed certificate is a new principal, with the roles it has now.
	renewed := principal(t, "spiffe://a.test/client/alice", nil, nil)
	want(renewed, tools)
	// The cache is bounded.
	many := make([]string, maxFilterDecisions+10)
	for i := range many {
		many[i] = fmt.Sprintf("lookup-%d", i)
	}
	if got := s.Filter(alice, tools, many); len(got) != len(many) {
		t.Fatalf("%d of %d allowed", len(got), len(many))
	}
	held := 0
	for _, m := range s.fc.m {
		held += len(m)
	}
	if n := held; n > maxFilterDecisions || n != s.fc.n {
		t.Fatalf("the cache holds %d decisions (counted %d), more than %d", n, s.fc.n, maxFilterDecisions)
	}
	want(alice, tools, "lookup", "lookup2")
}

// The filtering decisions are Authorize's, remembered or not.
func TestFilterAgreesWithAuthorize(t *testing.T) {
	s := compileString(t, `
@id("r") permit (principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource) when { resource.name like "read_*" };
@id("s") forbid (principal, action == Mcp::Action::"tools/call", resource) when { resource.name like "*_secret" };
`)
	p := principal(t, "spiffe://a.test/client/alice", []string{"reader"}, nil)
	names := []string{"read_a", "read_secret", "write_a", "read_b", "", "read_"}
	for round := range 3 {
		got := s.Filter(p, Request{Method: "tools/call", Time: t0}, names)
		var want []string
		for _, n := range names {
			if s.Authorize(p, Request{Method: "tools/call", Target: n, Time: t0}).Allow {
				want = append(want, n)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: Filter %q, Authorize %q", round, got, want)
		}
	}
}
