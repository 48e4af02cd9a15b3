package policy

import (
	"bytes"
	"encoding/json"
	"iter"
	"slices"

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
//
// Every policy sits in the buckets its scope names, and nowhere else, so the
// index grows linearly with the policy set: under each action it names (or
// under "any action"), in the bucket of the resource it names, of the
// resource type it names, or of any resource; within a bucket, under the
// principal, group or principal type it names, or under any principal. A
// request gathers the candidates of at most six buckets.
type index struct {
	byAction  map[string]*actionIndex // policies whose action scope names the action
	anyAction *actionIndex            // policies with an unconstrained action scope
	listSafe  []bool                  // by policy: listSafe (see decideList)
}

// actionIndex holds the buckets of one action, by resource scope.
type actionIndex struct {
	exact  map[types.EntityUID]*bucket
	byType map[types.EntityType]*bucket
	any    *bucket
	// context is set when one of its policies may read the context:
	// decisions of the action then depend on the time and source.
	context bool
}

// readsContext reports whether a policy that a request for method can
// match may read the context.
func (x *index) readsContext(method string) bool {
	if ai := x.byAction[method]; ai != nil && ai.context {
		return true
	}
	return x.anyAction.context
}

// mayReadContext reports whether p may read the context: whether its text
// names it. A policy reads the context only through the variable context,
// which its text names, so the answer errs only on the safe side (a string
// or annotation that says "context").
func mayReadContext(p *cedar.Policy) bool {
	return bytes.Contains(p.MarshalCedar(), []byte("context"))
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

// actionKeys returns the methods the action scope of p names; nil means
// the scope is unconstrained. (Validation guarantees they are Mcp::Action
// entities.)
func actionKeys(p *xast.Policy) []string {
	switch s := p.Action.(type) {
	case xast.ScopeTypeEq:
		return []string{string(s.Entity.ID)}
	case xast.ScopeTypeIn:
		return []string{string(s.Entity.ID)}
	case xast.ScopeTypeInSet:
		keys := make([]string, 0, len(s.Entities))
		for _, e := range s.Entities {
			if !slices.Contains(keys, string(e.ID)) {
				keys = append(keys, string(e.ID))
			}
		}
		return keys
	}
	return nil
}

func buildIndex(policies []policyEntry) *index {
	asts := make([]*xast.Policy, len(policies))
	ctx := make([]bool, len(policies))
	safe := make([]bool, len(policies))
	var anyAction []int32
	byAction := map[string][]int32{}
	for i, p := range policies {
		asts[i] = (*xast.Policy)(p.policy.AST())
		ctx[i] = mayReadContext(p.policy)
		safe[i] = listSafe(asts[i])
		keys := actionKeys(asts[i])
		if keys == nil {
			anyAction = append(anyAction, int32(i))
		}
		for _, k := range keys {
			byAction[k] = append(byAction[k], int32(i))
		}
	}
	idx := &index{byAction: make(map[string]*actionIndex, len(byAction)), anyAction: buildActionIndex(asts, ctx, anyAction), listSafe: safe}
	for a, l := range byAction {
		idx.byAction[a] = buildActionIndex(asts, ctx, l)
	}
	return idx
}

func buildActionIndex(asts []*xast.Policy, ctx []bool, ids []int32) *actionIndex {
	var resAny []int32
	resEq := map[types.EntityUID][]int32{}
	resType := map[types.EntityType][]int32{}
	for _, i := range ids {
		switch k := resourceScope(asts[i]); k.kind {
		case 1:
			resEq[k.uid] = append(resEq[k.uid], i)
		case 2:
			resType[k.typ] = append(resType[k.typ], i)
		default:
			resAny = append(resAny, i)
		}
	}
	mk := func(l []int32) *bucket {
		b := &bucket{}
		for _, i := range l {
			if prefix, guarded := uriGuard(asts[i]); guarded {
				b.addGuarded(i, asts[i], prefix)
			} else {
				b.add(i, asts[i])
			}
		}
		return b
	}
	ai := &actionIndex{
		exact:  make(map[types.EntityUID]*bucket, len(resEq)),
		byType: make(map[types.EntityType]*bucket, len(resType)),
		any:    mk(resAny),
	}
	for _, i := range ids {
		ai.context = ai.context || ctx[i]
	}
	for t, l := range resType {
		ai.byType[t] = mk(l)
	}
	for uid, l := range resEq {
		b := mk(l)
		e := buildResourceEntity(uid)
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

// buckets are the (up to six) buckets a request draws candidates from.
type buckets [6]*bucket

// lookup returns the buckets of (method, resource), and the prebuilt
// resource entity when a bucket names the resource.
func (x *index) lookup(method string, res types.EntityUID) (bs buckets, entity *types.Entity) {
	for i, ai := range [2]*actionIndex{x.byAction[method], x.anyAction} {
		if ai == nil {
			continue
		}
		if b := ai.exact[res]; b != nil {
			bs[3*i] = b
			entity = b.res
		}
		bs[3*i+1] = ai.byType[res.Type]
		bs[3*i+2] = ai.any
	}
	return bs, entity
}

// collect appends the candidates of every bucket for principal p and
// target; the buckets are disjoint, so no policy appears twice.
func (bs *buckets) collect(dst []int32, p *Principal, target string) []int32 {
	for _, b := range bs {
		dst = b.collect(dst, p, target)
	}
	return dst
}

// candidates is a cedar.PolicyIterator over a subset of a Set. It builds its
// iterator function once and reuses it, so a pooled candidates allocates
// nothing per request.
type candidates struct {
	s    *Set
	ids  []int32
	iter iter.Seq2[cedar.PolicyID, *cedar.Policy]
}

// All implements cedar.PolicyIterator.
func (c *candidates) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	if c.iter == nil {
		c.iter = func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
			for _, i := range c.ids {
				e := &c.s.policies[i]
				if !yield(e.id, e.policy) {
					return
				}
			}
		}
	}
	return c.iter
}
