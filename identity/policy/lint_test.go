package policy

import (
	"strings"
	"testing"
)

func TestLint(t *testing.T) {
	s := compileString(t, `@id("guarded")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"refund")
when { principal.attrs has team && principal.attrs.team == "payments" };

@id("unguarded-forbid")
forbid(principal, action, resource)
when { principal.attrs.employment == "contractor" };

@id("if-guarded")
permit(principal, action == Mcp::Action::"tools/call", resource)
when { if principal.attrs has level then principal.attrs.level == "3" else false };

@id("or-is-not-a-guard")
permit(principal, action == Mcp::Action::"tools/call", resource)
when { principal.attrs has x || principal.attrs.x == "1" };

@id("untyped-resource")
forbid(principal, action, resource) when { resource.uri like "secret://*" };

@id("typed-resource")
permit(principal, action == Mcp::Action::"resources/read", resource is Mcp::Resource) when { resource.uri like "docs://*" };

@id("args")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"transfer")
when { context.args has amount && context.args.amount < 100 && context.args.currency == "EUR" };

@id("typed-by-action")
permit(principal, action == Mcp::Action::"tools/call", resource) when { resource.name == "search" };

@id("always-present")
permit(principal, action == Mcp::Action::"tools/call", resource)
when { principal.name == "x" && context.hour > 8 && principal.roles.contains("a") };
`, WithToolArguments())
	var got []string
	for _, w := range s.Lint() {
		got = append(got, w.String())
	}
	want := []string{
		"test.cedar:5:1: warning: policy unguarded-forbid: principal.attrs.employment is read without `has` guarding it (a certificate may not carry attribute employment): guard it, e.g. `principal.attrs has employment && ...`",
		"test.cedar:13:1: warning: policy or-is-not-a-guard: principal.attrs.x is read without `has` guarding it (a certificate may not carry attribute x): guard it, e.g. `principal.attrs has x && ...`",
		"test.cedar:17:1: warning: policy untyped-resource: resource.uri is read without `has` guarding it (only resources have a uri, and neither the resource nor the action scope makes this one a resource: say `resource is Mcp::Resource`): guard it, e.g. `resource has uri && ...`",
		"test.cedar:23:1: warning: policy args: context.args.currency is read without `has` guarding it (a call may not pass argument currency): guard it, e.g. `context.args has currency && ...`",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Lint:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
