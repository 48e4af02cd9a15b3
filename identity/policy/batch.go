package policy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"slices"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/ast"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/batch"
)

// Deciding a list at once
//
// Filtering a list asks the same question of many targets: one principal,
// one action, one context, and a resource that varies. decideList takes
// the targets' candidate policies from the index, groups the targets
// whose candidates are the same policies (in a list they almost always
// are: the policies that name no resource), and decides a group of
// batchMin or more targets with one call of cedar-go's batch evaluator
// (x/exp/batch), which evaluates the policies as far as the principal,
// action and context allow once, compiles what is left, and then only
// substitutes each resource: no request, environment and diagnostic built
// per target, and the principal's scope and conditions evaluated once.
//
// The decision of each target is the one Authorize makes, because:
//
//   - the batch evaluator is handed the very candidates Authorize would
//     evaluate for each target of the group, and decides each target as
//     cedar.Authorize decides it from the same policies (its results carry
//     the same decision and the same erroring policies, from which allows
//     tells a forbid that errored);
//   - its entity getter (listEntities) answers every lookup an evaluation
//     of a target can make as requestEnv answers it for that target: the
//     principal's entity, the target's entity, nothing else. Evaluation
//     can only reach the target's entity through the variable resource
//     unless a condition names an entity of a resource type literally
//     (`Mcp::Tool::"x".name`), which the getter could not tell from the
//     target; groups with such a policy are decided one target at a time
//     (listSafe). Scope literals are compared, never looked up; the
//     principal's ancestors (roles, trust domain) and the targets have no
//     entities of their own, so `in` looks up nothing else;
//   - the results are matched to the targets by the resource each result
//     names; a result out of order, missing or an error of the evaluator
//     sends the whole group down the one-at-a-time path.
//
// TestListDecisionsMatchAuthorize holds decideList to Authorize on generated
// policy sets, principals and lists.

// batchMin is the smallest group decided by the batch evaluator: below it,
// the evaluator's set-up (a partial evaluation and a compilation of each
// candidate) costs more than it saves.
const batchMin = 8

// resourceVar is the name of the batch variable that stands for the target.
const resourceVar = "resource"

// listSafe reports whether p's conditions name no entity of a resource type
// literally (see decideList). It reads the conditions' Cedar text: an
// entity literal is written Type::"id" there; a string that happens to
// hold such text only errs on the safe side.
func listSafe(p *xast.Policy) bool {
	c := xast.Policy{Effect: p.Effect, Principal: xast.ScopeTypeAll{}, Action: xast.ScopeTypeAll{}, Resource: xast.ScopeTypeAll{}, Conditions: p.Conditions}
	text := (*ast.Policy)(&c).MarshalCedar()
	for _, t := range []types.EntityType{TypeTool, TypeResource, TypePrompt, TypeServer} {
		if bytes.Contains(text, []byte(string(t)+`::"`)) {
			return false
		}
	}
	return true
}

// listGroup is the targets of a list that have the same candidates.
type listGroup struct {
	ids   []int32 // the candidates
	items []int   // indexes into the targets
}

// decideList decides, for each target whose known mark is markUnknown,
// whether base's action on it is allowed for p, as Authorize would, and
// marks it; base.Time is set. It returns the number of targets decided.
func (s *Set) decideList(p *Principal, base *Request, targets []string, known []decisionMark) int {
	typ := base.TargetType
	if typ == "" {
		typ = TargetType(base.Method)
	}
	// The buckets that do not depend on the target, found once.
	ais := [2]*actionIndex{s.idx.byAction[base.Method], s.idx.anyAction}
	var shared buckets
	for i, ai := range ais {
		if ai != nil {
			shared[3*i+1], shared[3*i+2] = ai.byType[typ], ai.any
		}
	}
	var groups []listGroup
	byIDs := map[string]int{}
	var key []byte
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	r := *base
	misses := 0
	for i, t := range targets {
		if known[i] != markUnknown {
			continue
		}
		misses++
		r.Target = t
		res := r.resourceUID()
		bs := shared
		for j, ai := range ais {
			if ai != nil && len(ai.exact) > 0 {
				bs[3*j] = ai.exact[res]
			}
		}
		sc.ids = bs.collect(sc.ids[:0], p, string(res.ID))
		if len(sc.ids) == 0 {
			known[i] = markDenied
			continue
		}
		if n := len(groups); n > 0 && slices.Equal(groups[n-1].ids, sc.ids) {
			groups[n-1].items = append(groups[n-1].items, i)
			continue
		}
		key = key[:0]
		for _, id := range sc.ids {
			key = binary.LittleEndian.AppendUint32(key, uint32(id))
		}
		g, ok := byIDs[string(key)]
		if !ok {
			g = len(groups)
			byIDs[string(key)] = g
			groups = append(groups, listGroup{ids: slices.Clone(sc.ids)})
		}
		groups[g].items = append(groups[g].items, i)
	}
	if len(groups) == 0 {
		return misses
	}
	req := cedar.Request{
		Principal: p.uid,
		Action:    types.NewEntityUID(TypeAction, types.String(base.Method)),
		Context:   s.cfg.contextRecord(p, &r, base.Time),
	}
	for _, g := range groups {
		if len(g.items) >= batchMin && s.batchable(g.ids) {
			ok := s.decideBatch(p, &r, typ, req, g, targets, known)
			if batchHook != nil {
				batchHook(ok)
			}
			if ok {
				continue
			}
		}
		for _, i := range g.items {
			r.Target = targets[i]
			req.Resource = r.resourceUID()
			var entity *types.Entity
			for _, ai := range ais {
				if ai != nil && len(ai.exact) > 0 {
					if b := ai.exact[req.Resource]; b != nil {
						entity = b.res
					}
				}
			}
			sc.env = requestEnv{p: p, resUID: req.Resource, res: entity}
			sc.cand.s, sc.cand.ids = s, g.ids
			known[i] = markDenied
			if s.allows(cedar.Authorize(&sc.cand, &sc.env, req)) {
				known[i] = markAllowed
			}
		}
	}
	sc.env = requestEnv{}
	sc.cand.s, sc.cand.ids = nil, nil
	return misses
}

// batchable reports whether every one of ids is listSafe.
func (s *Set) batchable(ids []int32) bool {
	for _, id := range ids {
		if !s.idx.listSafe[id] {
			return false
		}
	}
	return true
}

// batchHook, when set (by tests), is told of every batch decided and
// whether it succeeded.
var batchHook func(ok bool)

var errOutOfStep = errors.New("batch result out of step")

// decideBatch decides the targets of g with the batch evaluator and marks
// them; false, with no mark changed, when the evaluator fails or its
// results cannot be matched to the targets.
func (s *Set) decideBatch(p *Principal, r *Request, typ types.EntityType, req cedar.Request, g listGroup, targets []string, known []decisionMark) bool {
	vals := make([]types.Value, len(g.items))
	ents := make([]types.Entity, len(g.items))
	for j, i := range g.items {
		r.Target = targets[i]
		ents[j].UID = r.resourceUID()
		vals[j] = ents[j].UID
	}
	entityCache.fill(ents)
	allowed := make([]bool, len(g.items))
	n := 0
	err := batch.Authorize(context.Background(), &candidates{s: s, ids: g.ids}, &listEntities{p: p, typ: typ, ents: ents}, batch.Request{
		Principal: req.Principal,
		Action:    req.Action,
		Resource:  batch.Variable(resourceVar),
		Context:   req.Context,
		Variables: batch.Variables{resourceVar: vals},
	}, func(res batch.Result) error {
		if n >= len(vals) || res.Request.Resource != vals[n] {
			return errOutOfStep
		}
		allowed[n] = s.allows(res.Decision, res.Diagnostic)
		n++
		return nil
	})
	if err != nil || n != len(vals) {
		return false
	}
	for j, i := range g.items {
		known[i] = markDenied
		if allowed[j] {
			known[i] = markAllowed
		}
	}
	return true
}

// listEntities is the entity getter of a batch of targets of type typ: the
// principal's entity, and the entity of a target (see decideList for why
// any entity of type typ looked up is the target being decided). ents are
// the targets' entities, in the order the evaluator decides them: the
// getter looks at the one it gave last and the next before it builds one.
type listEntities struct {
	p    *Principal
	typ  types.EntityType
	ents []types.Entity
	at   int
}

// Get implements types.EntityGetter.
func (e *listEntities) Get(uid types.EntityUID) (types.Entity, bool) {
	if uid == e.p.uid {
		return e.p.entity, true
	}
	if uid.Type != e.typ {
		return types.Entity{}, false
	}
	for k := e.at; k < len(e.ents) && k <= e.at+1; k++ {
		if e.ents[k].UID == uid {
			e.at = k
			return e.ents[k], true
		}
	}
	return resourceEntity(uid), true
}
