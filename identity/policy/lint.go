package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Warning is a finding of Lint about one policy: where it starts, which
// policy, and what may go wrong.
type Warning struct {
	File    string
	Line    int
	Column  int
	Policy  string // the policy's ID
	Message string
}

// String is FILE:LINE:COL: warning: [policy ID: ]MESSAGE, the ID left out
// for a policy without @id (its ID is its position).
func (w Warning) String() string {
	if strings.HasPrefix(w.Policy, w.File+":") {
		return fmt.Sprintf("%s:%d:%d: warning: %s", w.File, w.Line, w.Column, w.Message)
	}
	return fmt.Sprintf("%s:%d:%d: warning: policy %s: %s", w.File, w.Line, w.Column, w.Policy, w.Message)
}

// Lint reports attribute reads that can fail at evaluation time because
// the attribute may be absent: a certificate attribute
// (principal.attrs.NAME), a tool argument (context.args.NAME) and an
// attribute of a resource whose type neither the resource scope nor the
// action scope fixes (resource.name is a tool's or prompt's, resource.uri a
// resource's), each
// not guarded by a `has` test on the same path earlier in an `&&` chain or
// in the condition of an `if`. A permit that fails to evaluate is skipped and
// a forbid that fails denies (Decision.Reason "forbid errored"): either way
// not what its author meant. Cedar's AST keeps the position of the policy
// only, so a warning names the policy's position and the expression.
func (s *Set) Lint() []Warning {
	var out []Warning
	for _, e := range s.policies {
		a := (*ast.Policy)(e.policy.AST())
		l := linter{resourceTypes: targetTypes(a), seen: map[string]bool{}}
		for _, c := range a.Conditions {
			l.walk(c.Body, nil)
		}
		for _, m := range l.found {
			out = append(out, Warning{File: e.info.File, Line: e.info.Line, Column: e.info.Column, Policy: e.info.ID, Message: m})
		}
	}
	return out
}

type linter struct {
	resourceTypes []types.EntityType // nil: any type
	seen          map[string]bool
	found         []string
}

// targetTypes returns the entity types the resource of a policy can
// have: fixed by its resource scope, or by the methods of its action scope
// (tools/call: Mcp::Tool, ...); nil when any.
func targetTypes(a *ast.Policy) []types.EntityType {
	switch r := a.Resource.(type) {
	case ast.ScopeTypeIs:
		return []types.EntityType{r.Type}
	case ast.ScopeTypeIsIn:
		return []types.EntityType{r.Type}
	case ast.ScopeTypeEq:
		return []types.EntityType{r.Entity.Type}
	}
	var actions []types.EntityUID
	switch s := a.Action.(type) {
	case ast.ScopeTypeEq:
		actions = []types.EntityUID{s.Entity}
	case ast.ScopeTypeInSet:
		actions = s.Entities
	default:
		return nil
	}
	var out []types.EntityType
	for _, act := range actions {
		out = append(out, TargetType(string(act.ID)))
	}
	return out
}

// allOf reports whether every type the resource can have is one of want.
func (l *linter) allOf(want ...types.EntityType) bool {
	if l.resourceTypes == nil {
		return false
	}
	for _, t := range l.resourceTypes {
		if !slices.Contains(want, t) {
			return false
		}
	}
	return true
}

// path returns the dotted path of an attribute access chain rooted at a
// variable ("principal.attrs.team"), or "".
func path(n ast.IsNode) string {
	switch v := n.(type) {
	case ast.NodeTypeVariable:
		return string(v.Name)
	case ast.NodeTypeAccess:
		if p := path(v.Arg); p != "" {
			return p + "." + string(v.Value)
		}
	}
	return ""
}

// optional says why the attribute at p may be absent ("" when it is always
// present).
func (l *linter) optional(p string) string {
	switch {
	case strings.HasPrefix(p, "principal.attrs."):
		return "a certificate may not carry attribute " + strings.TrimPrefix(p, "principal.attrs.")
	case strings.HasPrefix(p, "context.args."):
		return "a call may not pass argument " + strings.TrimPrefix(p, "context.args.")
	case p == "resource.uri" && !l.allOf(TypeResource):
		return "only resources have a uri, and neither the resource nor the action scope makes this one a resource: say `resource is Mcp::Resource`"
	case p == "resource.name" && !l.allOf(TypeTool, TypePrompt):
		return "only tools and prompts have a name, and neither the resource nor the action scope makes this one a tool or prompt: say `resource is Mcp::Tool`"
	}
	return ""
}

// facts returns the paths that n, when true, proves present: `x has a`,
// and the facts of both sides of an &&.
func facts(n ast.IsNode) []string {
	switch v := n.(type) {
	case ast.NodeTypeHas:
		if p := path(v.Arg); p != "" {
			return []string{p + "." + string(v.Value)}
		}
	case ast.NodeTypeAnd:
		return append(facts(v.Left), facts(v.Right)...)
	}
	return nil
}

func with(guards, more []string) []string {
	if len(more) == 0 {
		return guards
	}
	return append(append([]string(nil), guards...), more...)
}

func guarded(guards []string, p string) bool {
	for _, g := range guards {
		if g == p {
			return true
		}
	}
	return false
}

func (l *linter) walk(n ast.IsNode, guards []string) {
	switch v := n.(type) {
	case nil:
		return
	case ast.NodeTypeAnd:
		l.walk(v.Left, guards)
		l.walk(v.Right, with(guards, facts(v.Left)))
		return
	case ast.NodeTypeIfThenElse:
		l.walk(v.If, guards)
		l.walk(v.Then, with(guards, facts(v.If)))
		l.walk(v.Else, guards)
		return
	case ast.NodeTypeHas:
		l.walk(v.Arg, guards) // the has itself is safe; what it tests on may not be
		return
	case ast.NodeTypeAccess:
		if p := path(v); p != "" {
			if why := l.optional(p); why != "" && !guarded(guards, p) && !l.seen[p] {
				l.seen[p] = true
				l.found = append(l.found, fmt.Sprintf("%s is read without `has` guarding it (%s): guard it, e.g. `%s has %s && ...`", p, why, p[:strings.LastIndexByte(p, '.')], p[strings.LastIndexByte(p, '.')+1:]))
			}
		}
		l.walk(v.Arg, guards)
		return
	}
	for _, c := range children(n) {
		l.walk(c, guards)
	}
}

// children returns the direct subexpressions of n, for the node types that
// walk does not handle itself.
func children(n ast.IsNode) []ast.IsNode {
	var out []ast.IsNode
	first := true
	ast.Inspect(ast.NewNode(n), func(c ast.IsNode) bool {
		if first { // n itself
			first = false
			return true
		}
		out = append(out, c)
		return false // direct children only
	})
	return out
}
