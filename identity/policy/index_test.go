package policy

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestIndexMatchesCedar is the property test of the index: over generated
// policy sets and requests, the indexed decision, its determining policies
// and its evaluation errors equal those of a full scan by plain cedar-go.
func TestIndexMatchesCedar(t *testing.T) {
	g := gen{r: rand.New(rand.NewPCG(1, 2))}
	var cases, allows, forbids, errs int
	for set := range 100 {
		n := 1 + g.r.IntN(80)
		if set%10 == 0 {
			n = 400
		}
		s := compileString(t, g.policies(n))
		principals := make([]*Principal, 8)
		for i := range principals {
			principals[i] = g.principal(t)
		}
		for range 200 {
			p := principals[g.r.IntN(len(principals))]
			r := g.request()
			got, want := s.Authorize(p, r), s.reference(p, r)
			slices.Sort(got.Errors)
			slices.Sort(want.Errors)
			if got.Allow != want.Allow || !slices.Equal(got.Policies, want.Policies) || !slices.Equal(got.Errors, want.Errors) || got.Reason != want.Reason {
				t.Fatalf("set %d, principal %s, request %+v:\nindexed %v %v %v\ncedar   %v %v %v", set, p.uid, r, got.Allow, got.Policies, got.Errors, want.Allow, want.Policies, want.Errors)
			}
			// Filtering agrees with single decisions.
			if r.Method == "tools/call" {
				if f := s.Filter(p, r, []string{r.Target}); (len(f) == 1) != got.Allow {
					t.Fatalf("Filter(%q) = %v, Authorize allow = %v", r.Target, f, got.Allow)
				}
			}
			cases++
			if got.Allow {
				allows++
			} else if len(got.Policies) > 0 {
				forbids++
			}
			if len(got.Errors) > 0 {
				errs++
			}
		}
	}
	t.Logf("%d cases: %d allowed, %d forbidden, %d with evaluation errors", cases, allows, forbids, errs)
	if allows < cases/20 || forbids < cases/50 || errs < cases/50 {
		t.Errorf("generator too one-sided: %d allows, %d forbids, %d errors of %d", allows, forbids, errs, cases)
	}
}
