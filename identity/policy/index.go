package policy

import (
	"encoding/json"
	"iter"
	"slices"
	"strings"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// The index narrows a request to the policies whose scope can match it, so a
// decision evaluates a handful of policies instead of all of them.
//
// Soundness rests on two facts. First, cedar-go evaluates a policy as
// scope && conditions with short-circuit, and a scope test never errors: a
// policy whose scope does not match evaluates to false with no error, so it
// cannot appear among the determining policies or the errors. Second, in
// the mcpca entity model actions and resources have no parents, and the
// principal's only ancestors are its roles and its trust domain (none of
// which have parents). So "action in A" holds exactly when action == A,
// "resource in R" exactly when resource == R, and "principal in G" exactly
// when G is the principal or one of its parents. Every policy the index
// might need is therefore in the candidate list; cedar-go then evaluates the
// candidates with the very same semantics, which the property test checks
// against a full scan.
type index struct {
	byAction map[string]*actionIndex
	other    *actionIndex // methods no policy can name: action-unconstrained policies only
}

// actionIndex holds the buckets of one action, by resource.
type actionIndex struct {
	exact  map[types.EntityUID]*bucket
	byType map[types.EntityType]*bucket
	any    *bucket
}

// bucket holds the candidates for one (action, resource) pair, by principal
// scope. Policies of the form
//
//	resource is Mcp::Resource) when { resource.uri like "<prefix>*..." && ...
//
// are kept apart by literal prefix (see uriGuard), in sub-buckets consulted
// only when the target starts with the prefix.
type bucket struct {
	any  []int32
	eq   map[types.EntityUID][]int32
	in   map[types.EntityUID][]int32
	typ  map[types.EntityType][]int32
	size int
	res  *types.Entity // the resource entity, for a bucket of one resource

	prefixLens []int              // distinct prefix lengths, ascending
	prefixes   map[string]*bucket // by literal prefix
}

func (b *bucket) addGuarded(i int32, p *xast.Policy, prefix string) {
	if b.prefixes == nil {
		b.prefixes = map[string]*bucket{}
	}
	sub := b.prefixes[prefix]
	if sub == nil {
		sub = &bucket{}
		b.prefixes[prefix] = sub
		n := len(prefix)
		if !slices.Contains(b.prefixLens, n) {
			b.prefixLens = append(b.prefixLens, n)
			slices.Sort(b.prefixLens)
		}
	}
	sub.add(i, p)
	b.size++
}

func (b *bucket) add(i int32, p *xast.Policy) {
	b.size++
	switch s := p.Principal.(type) {
	case xast.ScopeTypeEq:
		b.eq = addTo(b.eq, s.Entity, i)
	case xast.ScopeTypeIn:
		b.in = addTo(b.in, s.Entity, i)
	case xast.ScopeTypeIs:
		b.typ = addTo(b.typ, s.Type, i)
	case xast.ScopeTypeIsIn:
		b.in = addTo(b.in, s.Entity, i)
	default:
		b.any = append(b.any, i)
	}
}

func addTo[K comparable](m map[K][]int32, k K, i int32) map[K][]int32 {
	if m == nil {
		m = map[K][]int32{}
	}
	m[k] = append(m[k], i)
	return m
}

// collect appends the candidates for principal p and target to dst.
func (b *bucket) collect(dst []int32, p *Principal, target string) []int32 {
	if b == nil || b.size == 0 {
		return dst
	}
	for _, n := range b.prefixLens {
		if n > len(target) {
			break
		}
		dst = b.prefixes[target[:n]].collect(dst, p, "")
	}
	dst = append(dst, b.any...)
	if len(b.eq) > 0 {
		dst = append(dst, b.eq[p.uid]...)
	}
	if len(b.in) > 0 {
		dst = append(dst, b.in[p.uid]...)
		for _, g := range p.parents {
			dst = append(dst, b.in[g]...)
		}
	}
	if len(b.typ) > 0 {
		dst = append(dst, b.typ[p.uid.Type]...)
	}
	return dst
}

// resourceKey classifies a resource scope.
type resourceKey struct {
	kind int // 0 any, 1 exact entity, 2 entity type
	uid  types.EntityUID
	typ  types.EntityType
}

func resourceScope(p *xast.Policy) resourceKey {
	switch s := p.Resource.(type) {
	case xast.ScopeTypeEq:
		return resourceKey{kind: 1, uid: s.Entity}
	case xast.ScopeTypeIn:
		return resourceKey{kind: 1, uid: s.Entity}
	case xast.ScopeTypeIsIn:
		return resourceKey{kind: 1, uid: s.Entity}
	case xast.ScopeTypeIs:
		return resourceKey{kind: 2, typ: s.Type}
	}
	return resourceKey{}
}

// actionMatches reports whether the action scope of p can match method; an
// empty method stands for "a method no policy names".
func actionMatches(p *xast.Policy, method string) bool {
	uid := types.NewEntityUID(TypeAction, types.String(method))
	switch s := p.Action.(type) {
	case xast.ScopeTypeEq:
		return method != "" && s.Entity == uid
	case xast.ScopeTypeIn:
		return method != "" && s.Entity == uid
	case xast.ScopeTypeInSet:
		for _, e := range s.Entities {
			if method != "" && e == uid {
				return true
			}
		}
		return false
	}
	return true
}

func buildIndex(policies []policyEntry, cfg *config) *index {
	asts := make([]*xast.Policy, len(policies))
	for i, p := range policies {
		asts[i] = (*xast.Policy)(p.policy.AST())
	}
	idx := &index{byAction: map[string]*actionIndex{}, other: buildActionIndex(asts, "")}
	for a := range cfg.actions {
		idx.byAction[a] = buildActionIndex(asts, a)
	}
	return idx
}

func buildActionIndex(asts []*xast.Policy, method string) *actionIndex {
	var resAny []int32
	resEq := map[types.EntityUID][]int32{}
	resType := map[types.EntityType][]int32{}
	for i, p := range asts {
		if !actionMatches(p, method) {
			continue
		}
		switch k := resourceScope(p); k.kind {
		case 1:
			resEq[k.uid] = append(resEq[k.uid], int32(i))
		case 2:
			resType[k.typ] = append(resType[k.typ], int32(i))
		default:
			resAny = append(resAny, int32(i))
		}
	}
	// mk builds a bucket from lists; exact is the resource when the bucket
	// serves one resource entity, which resolves URI guards statically.
	mk := func(exact *types.EntityUID, lists ...[]int32) *bucket {
		b := &bucket{}
		for _, l := range lists {
			for _, i := range l {
				prefix, guarded := uriGuard(asts[i])
				switch {
				case !guarded:
					b.add(i, asts[i])
				case exact != nil:
					if strings.HasPrefix(string(exact.ID), prefix) {
						b.add(i, asts[i])
					}
				default:
					b.addGuarded(i, asts[i], prefix)
				}
			}
		}
		return b
	}
	ai := &actionIndex{
		exact:  make(map[types.EntityUID]*bucket, len(resEq)),
		byType: make(map[types.EntityType]*bucket, len(resType)),
		any:    mk(nil, resAny),
	}
	for t, l := range resType {
		ai.byType[t] = mk(nil, resAny, l)
	}
	for uid, l := range resEq {
		b := mk(&uid, resAny, resType[uid.Type], l)
		e := resourceEntity(uid)
		b.res = &e
		ai.exact[uid] = b
	}
	return ai
}

// uriGuard reports whether p can hold only for Mcp::Resource targets whose
// URI starts with prefix, and cannot error otherwise: its resource scope is
// "resource is Mcp::Resource" (every such entity has a uri), and the first
// thing its conditions evaluate is resource.uri like "<prefix>..." with a
// non-empty literal prefix. cedar-go evaluates the scope, then the
// conditions left to right with short-circuit, so for any other URI the
// policy is false without evaluating anything that could fail.
func uriGuard(p *xast.Policy) (string, bool) {
	if s, ok := p.Resource.(xast.ScopeTypeIs); !ok || s.Type != TypeResource {
		return "", false
	}
	if len(p.Conditions) == 0 || p.Conditions[0].Condition != xast.ConditionWhen {
		return "", false
	}
	n := p.Conditions[0].Body
	for {
		and, ok := n.(xast.NodeTypeAnd)
		if !ok {
			break
		}
		n = and.Left
	}
	like, ok := n.(xast.NodeTypeLike)
	if !ok {
		return "", false
	}
	acc, ok := like.Arg.(xast.NodeTypeAccess)
	if !ok || acc.Value != "uri" {
		return "", false
	}
	if v, ok := acc.Arg.(xast.NodeTypeVariable); !ok || v.Name != "resource" {
		return "", false
	}
	prefix := patternPrefix(like.Value)
	return prefix, prefix != ""
}

// patternPrefix returns the literal text a pattern starts with, "" when it
// starts with a wildcard.
func patternPrefix(p types.Pattern) string {
	b, err := p.MarshalJSON()
	if err != nil {
		return ""
	}
	var comps []json.RawMessage
	if json.Unmarshal(b, &comps) != nil || len(comps) == 0 {
		return ""
	}
	var lit struct{ Literal *string }
	if json.Unmarshal(comps[0], &lit) != nil || lit.Literal == nil {
		return ""
	}
	return *lit.Literal
}

// lookup returns the bucket of (method, resource).
func (x *index) lookup(method string, res types.EntityUID) *bucket {
	ai := x.byAction[method]
	if ai == nil {
		ai = x.other
	}
	if b := ai.exact[res]; b != nil {
		return b
	}
	if b := ai.byType[res.Type]; b != nil {
		return b
	}
	return ai.any
}

// candidates is a cedar.PolicyIterator over a subset of a Set.
type candidates struct {
	s   *Set
	ids []int32
}

// All implements cedar.PolicyIterator.
func (c *candidates) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, i := range c.ids {
			e := &c.s.policies[i]
			if !yield(e.id, e.policy) {
				return
			}
		}
	}
}
