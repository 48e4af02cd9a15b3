package policy

import (
	"strings"
	"testing"
)

// A forbid whose condition cannot be evaluated (it reads an attribute the
// certificate lacks) denies: Cedar would skip it, letting through what it
// was written to stop. A permit that errors is skipped, as before.
func TestErroringForbidDenies(t *testing.T) {
	s := compileString(t, `
@id("all-search")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"search");

@id("no-contractors")
forbid(principal, action, resource) when { principal.attrs.employment == "contractor" };

@id("team-docs")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"docs") when { principal.attrs.team == "docs" };
`)
	staff := principal(t, "spiffe://example.org/client/staff", nil, map[string]string{"employment": "staff", "team": "docs"})
	contractor := principal(t, "spiffe://example.org/client/c", nil, map[string]string{"employment": "contractor"})
	unknown := principal(t, "spiffe://example.org/client/u", nil, nil) // no employment attribute
	for _, tc := range []struct {
		name   string
		p      *Principal
		target string
		allow  bool
		reason string
		ids    string
	}{
		{"staff", staff, "search", true, "permitted", "all-search"},
		{"contractor", contractor, "search", false, "forbidden", "no-contractors"},
		{"attribute missing", unknown, "search", false, "forbid errored", "no-contractors"},
		{"erroring permit is skipped", unknown, "docs", false, "forbid errored", "no-contractors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, d := range []Decision{s.Authorize(tc.p, Request{Method: "tools/call", Target: tc.target}), s.reference(tc.p, Request{Method: "tools/call", Target: tc.target})} {
				if d.Allow != tc.allow || d.Reason != tc.reason || strings.Join(d.Policies, ",") != tc.ids {
					t.Fatalf("got %+v, want allow=%v %q %s", d, tc.allow, tc.reason, tc.ids)
				}
			}
		})
	}
	d := s.Authorize(unknown, Request{Method: "tools/call", Target: "search"})
	if len(d.Errors) != 1 || !strings.HasPrefix(d.Errors[0], "no-contractors: ") || !strings.Contains(d.Errors[0], "employment") {
		t.Fatalf("errors %q: want the forbid's evaluation error naming the attribute", d.Errors)
	}
	// Guarded with has, the forbid no longer errors, and the permit applies.
	g := compileString(t, `
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"search");
forbid(principal, action, resource) when { principal.attrs has employment && principal.attrs.employment == "contractor" };
`)
	if d := g.Authorize(unknown, Request{Method: "tools/call", Target: "search"}); !d.Allow || len(d.Errors) != 0 {
		t.Fatalf("guarded forbid: %+v", d)
	}
}
