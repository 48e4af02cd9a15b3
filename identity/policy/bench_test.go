package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchPolicies returns n policies shaped like a real deployment: per-tool
// role grants, resource URI patterns, attribute and business-hours
// conditions, list permissions and a few explicit forbids.
func benchPolicies(n int) string {
	var b strings.Builder
	roles := []string{"reader", "writer", "admin", "ops", "support", "finance", "intern", "auditor"}
	for i := range n {
		role := roles[i%len(roles)]
		switch i % 10 {
		case 0, 1, 2, 3:
			fmt.Fprintf(&b, "permit(principal in Mcp::Role::%q, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"tool-%d\");\n", role, i)
		case 4:
			fmt.Fprintf(&b, "permit(principal in Mcp::Role::%q, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"tool-%d\")\n  when { principal.attrs has team && principal.attrs.team == \"team-%d\" };\n", role, i, i%7)
		case 5:
			fmt.Fprintf(&b, "permit(principal in Mcp::Role::%q, action == Mcp::Action::\"resources/read\", resource is Mcp::Resource)\n  when { resource.uri like \"file:///data/%d/*\" };\n", role, i)
		case 6:
			fmt.Fprintf(&b, "permit(principal in Mcp::Role::%q, action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"tool-%d\")\n  when { context.hour >= 8 && context.hour < 18 && context.weekday != 0 && context.weekday != 6 };\n", role, i)
		case 7:
			fmt.Fprintf(&b, "permit(principal in Mcp::Role::%q, action == Mcp::Action::\"prompts/get\", resource == Mcp::Prompt::\"prompt-%d\");\n", role, i)
		case 8:
			fmt.Fprintf(&b, "forbid(principal in Mcp::Role::\"intern\", action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"tool-%d\");\n", i-8)
		case 9:
			if i < 10*len(roles) { // list grants: one per role
				fmt.Fprintf(&b, "permit(principal in Mcp::Role::%q, action in [Mcp::Action::\"tools/list\", Mcp::Action::\"resources/list\", Mcp::Action::\"prompts/list\"], resource);\n", roles[i/10])
			} else { // per-service grants
				fmt.Fprintf(&b, "permit(principal == Mcp::Client::\"spiffe://example.org/client/svc-%d\", action == Mcp::Action::\"tools/call\", resource == Mcp::Tool::\"tool-%d\");\n", i, i-9)
			}
		}
	}
	return b.String()
}

// benchRequests is a rotation of requests, allowed and denied.
func benchRequests(n int) []Request {
	src := netip.MustParseAddr("192.0.2.7")
	var rs []Request
	for i := 0; i < n; i += 10 {
		rs = append(rs,
			Request{Method: "tools/call", Target: fmt.Sprintf("tool-%d", i), Source: src, Time: t0},
			Request{Method: "tools/call", Target: fmt.Sprintf("tool-%d", i+4), Source: src, Time: t0},
			Request{Method: "tools/call", Target: fmt.Sprintf("tool-%d", i+6), Source: src, Time: t0},
			Request{Method: "resources/read", Target: fmt.Sprintf("file:///data/%d/x.csv", i+5), Source: src, Time: t0},
			Request{Method: "prompts/get", Target: fmt.Sprintf("prompt-%d", i+7), Source: src, Time: t0},
			Request{Method: "tools/list", Source: src, Time: t0},
		)
	}
	return rs
}

// BenchmarkAuthorize runs the indexed Set and a full cedar-go scan side by
// side on the same policies, principal and requests (the request time moves
// one millisecond per request); scripts/bench-policy.sh prints the ratio.
func BenchmarkAuthorize(b *testing.B) {
	p := principal(b, "spiffe://example.org/client/alice", []string{"reader", "writer", "ops"}, map[string]string{"team": "team-4"})
	for _, n := range []int{50, 1000} {
		s := compileString(b, benchPolicies(n))
		reqs := benchRequests(n)
		b.Run(fmt.Sprintf("indexed/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r := reqs[i%len(reqs)]
				r.Time = t0.Add(time.Duration(i) * time.Millisecond)
				s.Authorize(p, r)
			}
		})
		b.Run(fmt.Sprintf("cedar/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r := reqs[i%len(reqs)]
				r.Time = t0.Add(time.Duration(i) * time.Millisecond)
				s.reference(p, r)
			}
		})
	}
}

// BenchmarkFilterTools filters a 1,000-tool list against 1,000 policies.
func BenchmarkFilterTools(b *testing.B) {
	p := principal(b, "spiffe://example.org/client/alice", []string{"reader", "writer", "ops"}, map[string]string{"team": "team-4"})
	s := compileString(b, benchPolicies(1000))
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("tool-%d", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		s.FilterTools(p, names)
	}
}

// BenchmarkNewPrincipal is the once-per-connection cost.
func BenchmarkNewPrincipal(b *testing.B) {
	id := ident(b, "spiffe://example.org/client/alice", []string{"reader", "writer", "ops"}, map[string]string{"team": "team-4", "env": "prod"})
	b.ReportAllocs()
	for b.Loop() {
		NewPrincipal(id)
	}
}

// BenchmarkAuthorizeLatency times every decision on its own and reports the
// median and 99th percentile (p50-ns, p99-ns; each includes the ~30 ns of
// reading the clock twice), for the indexed Set and for plain cedar-go.
func BenchmarkAuthorizeLatency(b *testing.B) {
	p := principal(b, "spiffe://example.org/client/alice", []string{"reader", "writer", "ops"}, map[string]string{"team": "team-4"})
	for _, n := range []int{50, 1000} {
		s := compileString(b, benchPolicies(n))
		reqs := benchRequests(n)
		for _, mode := range []string{"indexed", "cedar"} {
			decide := s.Authorize
			if mode == "cedar" {
				decide = s.reference
			}
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) {
				lat := make([]time.Duration, 0, 1<<16)
				for i := 0; b.Loop(); i++ {
					r := reqs[i%len(reqs)]
					r.Time = t0.Add(time.Duration(i) * time.Millisecond)
					start := time.Now()
					decide(p, r)
					if len(lat) < cap(lat) {
						lat = append(lat, time.Since(start))
					}
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			})
		}
	}
}
