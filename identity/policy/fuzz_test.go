package policy

import (
	"errors"
	"strings"
	"testing"
)

// FuzzPolicyLoad compiles arbitrary policy text. Invariants: no panic; an
// error is a located LoadError starting with "policy: "; a set that
// compiles decides a request identically with and without the index.
func FuzzPolicyLoad(f *testing.F) {
	f.Add(basicPolicies)
	f.Add(benchPolicies(30))
	f.Add("")
	f.Add("permit(principal, action, resource);")
	f.Add("forbid(principal, action, resource) unless { context.source_address.isInRange(ip(\"10.0.0.0/8\")) };")
	f.Add("permit(principal is Mcp::Client in Mcp::Role::\"r\", action in [Mcp::Action::\"tools/call\"], resource is Mcp::Resource in Mcp::Resource::\"u\");")
	f.Add("permit(principal, action, resource is Mcp::Resource) when { resource.uri like \"file:///\\*x*\" && principal.attrs.a == \"\\u{1F600}\" };")
	f.Add("@id(\"x\") @id(\"y\") permit(principal, action, resource);")
	f.Add("permit(principal, action == Mcp::Action::\"tools/cal\", resource);")
	f.Add("permit(principal, action, resource) when { context.now > datetime(\"2026-01-01\") && context.hour < 9 };")
	f.Add("permit(principal, action, resource) when { [principal, resource, {a: Mcp::Tool::\"x\"}].contains(1) };")
	f.Add("permit(")
	f.Add("\"\\")
	f.Add("forbid(principal, action, resource) when { if principal.attrs has a then principal.attrs.b == 1 else resource.uri like \"x\" };")
	p := principal(f, "spiffe://td/client/alice", []string{"r", "reader"}, map[string]string{"a": "b"})
	reqs := []Request{
		{Method: "tools/call", Target: "x", Time: t0},
		{Method: "resources/read", Target: "file:///*x", Time: t0},
		{Method: "tools/list", Time: t0},
	}
	f.Fuzz(func(t *testing.T, src string) {
		s, err := Compile([]File{{Name: "f.cedar", Data: []byte(src)}}, WithToolArguments())
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || !strings.HasPrefix(err.Error(), "policy: f.cedar:") || le.Line < 1 || le.Column < 1 {
				t.Fatalf("error not located: %q", err)
			}
			return
		}
		for _, r := range reqs {
			got, want := s.Authorize(p, r), s.reference(p, r)
			if got.Allow != want.Allow || strings.Join(got.Policies, ",") != strings.Join(want.Policies, ",") {
				t.Fatalf("indexed %v %v, cedar %v %v", got.Allow, got.Policies, want.Allow, want.Policies)
			}
		}
		// The lint walks every policy's AST: it names a position in the
		// file for each warning, and never panics.
		for _, w := range s.Lint() {
			if w.File != "f.cedar" || w.Line < 1 || w.Column < 1 || w.Message == "" {
				t.Fatalf("lint warning without a position or message: %+v", w)
			}
		}
	})
}
