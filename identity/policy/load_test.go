package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, src string
		opts      []Option
		want      string
	}{
		{"syntax: missing semicolon", "permit(principal, action, resource)\n", nil,
			`policy: bad.cedar:2:1: syntax error: expected ";", got end of input`},
		{"syntax: unclosed when", "permit(principal, action, resource)\nwhen { principal.attrs.team == \"x\" ", nil,
			`policy: bad.cedar:2:36: syntax error: expected "}", got end of input`},
		{"syntax: unknown function", "permit(principal, action, resource) when { foo(1) };", nil,
			"policy: bad.cedar:1:48: syntax error: `foo` is not a function"},
		{"invalid utf-8", "permit(principal, action, resource)\nwhen { \"\xff\" };", nil,
			"policy: bad.cedar:2:9: syntax error: invalid UTF-8"},
		{"unknown action", "\n\npermit(principal, action == Mcp::Action::\"tools/cal\", resource);", nil,
			`policy: bad.cedar:3:42: unknown action Mcp::Action::"tools/cal": expected an MCP method such as "tools/call", "resources/read" or "prompts/get"`},
		{"unknown action in set", "permit(principal, action in [Mcp::Action::\"tools/call\", Mcp::Action::\"tool/call\"], resource);", nil,
			`policy: bad.cedar:1:70: unknown action Mcp::Action::"tool/call"`},
		{"unknown action in condition", "permit(principal, action, resource) when { action == Mcp::Action::\"delete\" };", nil,
			`policy: bad.cedar:1:67: unknown action Mcp::Action::"delete"`},
		{"always allowed action", "forbid(principal, action == Mcp::Action::\"ping\", resource);", nil,
			`policy: bad.cedar:1:42: action Mcp::Action::"ping" is always allowed: initialize, ping and notifications cannot be restricted by policy`},
		{"unknown entity type in scope", "permit(principal in Mcp::Group::\"x\", action, resource);", nil,
			"policy: bad.cedar:1:21: unknown entity type Mcp::Group: expected one of Mcp::Action, Mcp::Client, Mcp::Prompt, Mcp::Resource, Mcp::Role, Mcp::Server, Mcp::Tool, Mcp::TrustDomain"},
		{"unknown entity type in is", "permit(principal, action, resource is Mcp::Tol);", nil,
			"policy: bad.cedar:1:39: unknown entity type Mcp::Tol"},
		{"unknown entity type in condition", "permit(principal, action, resource) when { resource in Tool::\"x\" };", nil,
			"policy: bad.cedar:1:56: unknown entity type Tool"},
		{"role as principal", "permit(principal == Mcp::Role::\"admin\", action, resource);", nil,
			`policy: bad.cedar:1:21: principal == Mcp::Role::"admin" never matches: expected an entity of type Mcp::Client, Mcp::Server`},
		{"tool as principal type", "permit(principal is Mcp::Tool, action, resource);", nil,
			"policy: bad.cedar:1:21: principal is Mcp::Tool never matches: expected one of Mcp::Client, Mcp::Server"},
		{"role as resource", "permit(principal, action, resource in Mcp::Role::\"x\");", nil,
			`policy: bad.cedar:1:39: resource in Mcp::Role::"x" never matches`},
		{"client with server id", "permit(principal == Mcp::Client::\"spiffe://td/server/x\", action, resource);", nil,
			`policy: bad.cedar:1:34: Mcp::Client::"spiffe://td/server/x" never matches: the ID of a Mcp::Client is spiffe://<trust-domain>/client/<name>`},
		{"unknown principal attribute", "permit(principal, action, resource) when { principal.team == \"x\" };", nil,
			"policy: bad.cedar:1:53: unknown attribute principal.team: principal has attrs, fingerprint, id, kind, name, not_after, not_before, roles, serial, trust_domain"},
		{"unknown context attribute", "permit(principal, action, resource) when { context.time > 3 };", nil,
			"policy: bad.cedar:1:51: unknown attribute context.time: context has auth, hour, minute, now, source_address, weekday"},
		{"args without option", "permit(principal, action, resource) when { context.args.x == 1 };", nil,
			"policy: bad.cedar:1:51: context.args is not available: tool arguments reach policies only when enabled (policy.WithToolArguments)"},
		{"action attribute", "permit(principal, action, resource) when { action.name == \"x\" };", nil,
			"policy: bad.cedar:1:44: actions have no attributes (action.name)"},
		{"tags", "permit(principal, action, resource) when { principal.hasTag(\"x\") };", nil,
			"policy: bad.cedar:1:54: mcpca entities have no tags: read certificate attributes as principal.attrs.<key>"},
		{"tool has no uri", "permit(principal, action, resource is Mcp::Tool) when { resource.uri like \"x*\" };", nil,
			"policy: bad.cedar:1:65: unknown attribute resource.uri: the resource is a Mcp::Tool, which has only name"},
		{"server has no attributes", "permit(principal, action, resource == Mcp::Server::\"self\") when { resource.name == \"x\" };", nil,
			"policy: bad.cedar:1:75: unknown attribute resource.name: the resource is a Mcp::Server, which has no attributes"},
		{"unknown resource attribute", "permit(principal, action, resource) when { resource.path == \"x\" };", nil,
			"policy: bad.cedar:1:52: unknown attribute resource.path: resource has name, uri"},
		{"empty id", "@id(\"\")\npermit(principal, action, resource);", nil,
			"policy: bad.cedar:1:1: empty policy id: @id needs a name"},
		{"too deep", "permit(principal, action, resource) when { \"((\" == \"\\\"(\" || " + strings.Repeat("(", 300) + "true" + strings.Repeat(")", 300) + " };", nil,
			"policy: bad.cedar:1:316: nesting deeper than 256 levels"},
		{"too big", "permit(principal, action, resource);" + strings.Repeat(" ", MaxSourceBytes), nil,
			"policy: bad.cedar:1:1: policy file is 4194340 bytes, the limit is 4194304"},
		{"self as principal", "permit(principal == Mcp::Server::\"self\", action, resource);", nil,
			`policy: bad.cedar:1:34: principal == Mcp::Server::"self" never matches: Mcp::Server::"self" is the resource of methods without a target, never a principal`},
		{"server resource not self", "permit(principal, action, resource == Mcp::Server::\"spiffe://td/server/x\");", nil,
			`policy: bad.cedar:1:52: resource == Mcp::Server::"spiffe://td/server/x" never matches: the only Mcp::Server resource is Mcp::Server::"self"`},
		{"getTag", "permit(principal, action, resource) when { principal.getTag(\"x\") == 1 };", nil,
			"policy: bad.cedar:1:54: mcpca entities have no tags: read certificate attributes as principal.attrs.<key>"},
		{"duplicate id", "@id(\"a\")\npermit(principal, action, resource);\n@id(\"a\")\nforbid(principal, action, resource);", nil,
			`policy: bad.cedar:3:1: duplicate policy id "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile([]File{{Name: "bad.cedar", Data: []byte(tt.src)}}, tt.opts...)
			if err == nil {
				t.Fatal("Compile succeeded")
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Error("error does not wrap ErrInvalidPolicy")
			}
			var le *LoadError
			if !errors.As(err, &le) || le.File != "bad.cedar" {
				t.Errorf("error is not a *LoadError for bad.cedar: %#v", err)
			}
		})
	}
}

func TestCompileReportsEveryError(t *testing.T) {
	srcs := []File{
		{Name: "a.cedar", Data: []byte("permit(principal, action == Mcp::Action::\"nope\", resource);\npermit(principal is Mcp::Bogus, action, resource);")},
		{Name: "b.cedar", Data: []byte("permit(")},
		{Name: "c.cedar", Data: []byte("permit(principal, action, resource);")},
	}
	_, err := Compile(srcs)
	if err == nil {
		t.Fatal("Compile succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"policy: a.cedar:1:42: unknown action", "policy: a.cedar:2:21: unknown entity type Mcp::Bogus", "policy: b.cedar:1:8: syntax error"}
	if len(lines) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestCompileAccepts(t *testing.T) {
	src := `
permit(principal, action == Mcp::Action::"tools/call", resource) when { context.args.amount < 100 };
permit(principal == Mcp::Server::"spiffe://td/server/gw", action, resource == Mcp::Server::"self");
permit(principal in Mcp::TrustDomain::"td", action == Mcp::Action::"completion/complete", resource is Mcp::Prompt);
permit(principal, action, resource) when { principal has attrs && principal.attrs has team && resource has uri };
`
	src += "// (((" + strings.Repeat("(", 300) + "\n"
	s := compileString(t, src, WithToolArguments())
	if s.Len() != 4 {
		t.Fatalf("Len = %d", s.Len())
	}
	infos := s.Policies()
	if infos[1].ID != "test.cedar:3" || infos[1].Line != 3 || infos[1].Column != 1 || !infos[1].Permit {
		t.Errorf("Policies()[1] = %+v", infos[1])
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load([]string{"/nonexistent/p.cedar"})
	if err == nil || !strings.HasPrefix(err.Error(), "policy: reading policy file: open /nonexistent/p.cedar:") {
		t.Fatalf("err = %v", err)
	}
}

func TestSamePositionIDs(t *testing.T) {
	s := compileString(t, `permit(principal, action == Mcp::Action::"tools/list", resource); permit(principal, action == Mcp::Action::"tools/list", resource);`)
	p := principal(t, "spiffe://td/client/a", nil, nil)
	d := s.Authorize(p, Request{Method: "tools/list", Time: t0})
	want := []string{"test.cedar:1", "test.cedar:1:67"}
	if len(d.Policies) != 2 || d.Policies[0] != want[0] || d.Policies[1] != want[1] {
		t.Errorf("Policies = %v, want %v", d.Policies, want)
	}
}
