package policy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// listConds are conditions aimed at deciding a list at once: a resource
// read beside the principal or the context, in either order, a resource
// entity named literally (which keeps a policy off the batch path),
// if-then-else and missing attributes on either side of a short circuit.
var listConds = []string{
	`resource.name like "t*" || principal.attrs.env == "prod"`,
	`principal.attrs.env == "prod" || resource.name like "*e*"`,
	`resource.name like "*h" && principal.attrs.team == "payments"`,
	`resource.name == principal.attrs.team`,
	`if resource has name then resource.name like "t*" else false`,
	`if principal.attrs has env then resource.name like "f*" else resource.name like "d*"`,
	`["search", "t2", "x7"].contains(resource.name)`,
	`resource == Mcp::Tool::"t1"`,
	`Mcp::Tool::"refund".name == "refund"`,
	`resource.uri like "file:///docs/*" || resource.uri like "*passwd"`,
	`resource has uri && resource.uri like "db://*" && context.hour > 11`,
	`resource has name && resource.name like "p*" && principal.kind == "client"`,
	`principal.roles.contains("admin") && !(resource.name like "t*")`,
	`Mcp::Prompt::"p0".name == "p0"`,
}

// TestListDecisionsMatchAuthorize is the property test of list filtering
// (decideList: targets grouped by candidates, large groups decided by
// cedar-go's batch evaluator): over generated policy sets, principals and
// lists, Filter keeps exactly the targets Authorize allows one at a time,
// and those a full scan by plain cedar-go allows.
func TestListDecisionsMatchAuthorize(t *testing.T) {
	g := gen{r: rand.New(rand.NewPCG(3, 4))}
	saved := genConds
	genConds = append(slices.Clone(genConds), listConds...)
	defer func() { genConds = saved }()
	var batched, single int
	batchHook = func(ok bool) {
		if ok {
			batched++
		}
	}
	defer func() { batchHook = nil }()
	var lists, kept, dropped int
	for set := range 120 {
		n := 1 + g.r.IntN(40)
		if set%10 == 0 {
			n = 200
		}
		s := compileString(t, g.policies(n))
		for range 12 {
			p := g.principal(t)
			base := g.request()
			var pool []string
			switch g.r.IntN(4) {
			case 0:
				base.Method, base.TargetType, pool = "tools/call", "", genTools
			case 1:
				base.Method, base.TargetType, pool = "resources/read", "", genURIs
			case 2:
				base.Method, base.TargetType, pool = "prompts/get", "", genPrompts
			case 3:
				base.Method, base.TargetType, pool = "completion/complete", TypePrompt, genPrompts
			}
			// A list of up to 60 targets: the pool's names, repeated, and
			// names no policy names.
			targets := make([]string, g.r.IntN(60))
			for i := range targets {
				if g.r.IntN(3) == 0 {
					targets[i] = fmt.Sprintf("%s%d", g.pick(pool), g.r.IntN(5))
				} else {
					targets[i] = g.pick(pool)
				}
			}
			got := s.Filter(p, base, targets)
			var want, full []string
			for _, tg := range targets {
				r := base
				r.Target = tg
				d := s.evaluate(p, &r, r.Time)
				if d.Allow {
					want = append(want, tg)
				}
				if s.reference(p, r).Allow {
					full = append(full, tg)
				}
			}
			if !slices.Equal(got, want) || !slices.Equal(want, full) {
				t.Fatalf("set %d (%d policies), principal %s, %s %s:\ntargets   %q\nFilter    %q\nAuthorize %q\nfull scan %q\npolicies:\n%s",
					set, n, p.uid, base.Method, base.TargetType, targets, got, want, full, policiesText(s))
			}
			// Asked again, the set's remembered decisions say the same.
			if again := s.Filter(p, base, targets); !slices.Equal(again, got) {
				t.Fatalf("set %d: Filter again %q, first %q", set, again, got)
			}
			lists++
			kept += len(got)
			dropped += len(targets) - len(got)
		}
	}
	single = lists - batched
	t.Logf("%d lists: %d targets kept, %d dropped; %d groups decided in a batch (%d lists without)", lists, kept, dropped, batched, single)
	if batched < lists/4 || kept < dropped/10 || dropped < kept/10 {
		t.Errorf("generator too one-sided: %d batched groups of %d lists, %d kept, %d dropped", batched, lists, kept, dropped)
	}
}

func policiesText(s *Set) string {
	var out []byte
	for _, p := range s.policies {
		out = append(out, p.policy.MarshalCedar()...)
		out = append(out, '\n')
	}
	return string(out)
}

// A policy that names a resource entity in its conditions is decided one
// target at a time; the others in a batch. A string that reads like such
// a literal errs on the safe side (d), an escaped one does not (f).
func TestListSafe(t *testing.T) {
	s := compileString(t, `
@id("a") permit (principal, action, resource == Mcp::Tool::"x") when { resource.name like "t*" && principal.attrs.team == "p" };
@id("b") permit (principal in Mcp::Role::"r", action, resource) when { Mcp::Tool::"refund".name == "refund" };
@id("c") permit (principal, action, resource) when { resource == Mcp::Tool::"y" };
@id("d") permit (principal == Mcp::Client::"spiffe://a.test/client/c", action, resource) unless { resource.name == "Mcp::Tool::" };
@id("f") permit (principal, action, resource) unless { resource.name == "Mcp::Tool::\"z\"" };
@id("e") permit (principal, action, resource) when { principal in Mcp::Role::"ops" };
`)
	want := map[string]bool{"a": true, "b": false, "c": false, "d": false, "e": true, "f": true}
	for i, p := range s.policies {
		if got := s.idx.listSafe[i]; got != want[string(p.id)] {
			t.Errorf("policy %s: listSafe %v, want %v", p.id, got, want[string(p.id)])
		}
	}
}
