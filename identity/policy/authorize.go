package policy

import (
	"net/netip"
	"sync"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// scratch is the per-request working memory, pooled.
type scratch struct {
	env  requestEnv
	cand candidates
	ids  []int32
}

var scratchPool = sync.Pool{New: func() any { return &scratch{ids: make([]int32, 0, 32)} }}

// Authorize decides one request. initialize, ping and notifications/* are
// always allowed; any other method is allowed only if at least one policy
// permits it and none forbids it.
func (s *Set) Authorize(p *Principal, r Request) Decision {
	if AlwaysAllowed(r.Method) {
		return Decision{Allow: true, Reason: "always allowed"}
	}
	now := s.now(&r)
	// A connection tends to repeat the same request within a second: the
	// last decision of the principal is reused when everything it depends
	// on is the same (this set, the second, the source, the request).
	var key decisionKey
	cacheable := !(s.cfg.toolArgs && r.Args != nil)
	if cacheable {
		key = decisionKey{set: s, sec: now.Unix(), src: r.Source, method: r.Method, typ: r.TargetType, target: r.Target}
		if e := p.last.Load(); e != nil && e.key == key {
			return e.d
		}
	}
	d := s.evaluate(p, &r, now)
	if cacheable {
		p.last.Store(&decisionEntry{key: key, d: d})
	}
	return d
}

// evaluate decides r with Cedar. It is kept out of Authorize so that a
// decision taken from the cache needs only a small stack frame: callers
// such as MCP handlers run on fresh goroutines with small stacks, which a
// large frame on the common path makes likelier to be grown (copied).
//
//go:noinline
func (s *Set) evaluate(p *Principal, r *Request, now time.Time) Decision {
	res := r.resourceUID()
	bs, entity := s.idx.lookup(r.Method, res)
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	sc.ids = bs.collect(sc.ids[:0], p, string(res.ID))
	if len(sc.ids) == 0 {
		return Decision{Reason: "no policy permits"}
	}
	sc.env = requestEnv{p: p, resUID: res, res: entity}
	sc.cand.s = s
	sc.cand.ids = sc.ids
	d := s.decide(cedar.Authorize(&sc.cand, &sc.env, s.cedarRequest(p, res, r, now)))
	sc.env = requestEnv{}
	sc.cand.s, sc.cand.ids = nil, nil
	return d
}

// decisionKey is everything a decision depends on besides the principal.
type decisionKey struct {
	set    *Set
	sec    int64
	src    netip.Addr
	method string
	typ    types.EntityType
	target string
}

type decisionEntry struct {
	key decisionKey
	d   Decision
}

func (s *Set) now(r *Request) time.Time {
	if !r.Time.IsZero() {
		return r.Time
	}
	return s.cfg.clock.Now()
}

func (s *Set) cedarRequest(p *Principal, res types.EntityUID, r *Request, now time.Time) cedar.Request {
	return cedar.Request{
		Principal: p.uid,
		Action:    types.NewEntityUID(TypeAction, types.String(r.Method)),
		Resource:  res,
		Context:   s.cfg.contextRecord(p, r, now),
	}
}

// reference decides r by a full scan of the policy set with plain cedar-go,
// with the same entities and context as Authorize. Tests and benchmarks
// compare the two.
func (s *Set) reference(p *Principal, r Request) Decision {
	if AlwaysAllowed(r.Method) {
		return Decision{Allow: true, Reason: "always allowed"}
	}
	res := r.resourceUID()
	env := &requestEnv{p: p, resUID: res}
	return s.decide(cedar.Authorize(s.cedar, env, s.cedarRequest(p, res, &r, s.now(&r))))
}

// decide turns Cedar's answer into a Decision. Cedar skips a policy whose
// condition fails to evaluate (an attribute the principal lacks, a type
// error); for a permit that fails closed, but a skipped forbid would let
// through what it was written to stop. So a forbid that errors denies, with
// the reason "forbid errored" and the policy among Policies.
func (s *Set) decide(dec cedar.Decision, diag cedar.Diagnostic) Decision {
	d := Decision{Allow: dec == cedar.Allow, Policies: sortedIDs(diag.Reasons)}
	var erroredForbids []cedar.DiagnosticReason
	if len(diag.Errors) > 0 {
		d.Errors = make([]string, len(diag.Errors))
		for i, e := range diag.Errors {
			d.Errors[i] = string(e.PolicyID) + ": " + e.Message
			if p := s.cedar.Get(e.PolicyID); p != nil && p.Effect() == cedar.Forbid {
				erroredForbids = append(erroredForbids, cedar.DiagnosticReason{PolicyID: e.PolicyID, Position: e.Position})
			}
		}
	}
	switch {
	case len(erroredForbids) > 0:
		d.Allow = false
		d.Policies = sortedIDs(erroredForbids)
		d.Reason = "forbid errored"
	case d.Allow:
		d.Reason = "permitted"
	case len(d.Policies) > 0:
		d.Reason = "forbidden"
	default:
		d.Reason = "no policy permits"
	}
	return d
}

// allows is decide(dec, diag).Allow without building the Decision.
func (s *Set) allows(dec cedar.Decision, diag cedar.Diagnostic) bool {
	if dec != cedar.Allow {
		return false
	}
	for _, e := range diag.Errors {
		if p := s.cedar.Get(e.PolicyID); p != nil && p.Effect() == cedar.Forbid {
			return false
		}
	}
	return true
}

// Filter returns the targets that base, with each target substituted, may
// act on: the list-filtering helper, with exactly the decisions Authorize
// would make. base.Method names the action, e.g. "tools/call" to filter a
// tools/list result. The order of targets is kept.
//
// A set remembers the filtering decisions it made (see filterCache), so a
// caller listing the same tools again, or another session of the same
// identity, is answered without evaluating Cedar again: a decision is reused
// only for the same set (a reload makes a new one), the same principal (a
// renewed certificate makes a new one; a revoked one never gets this far),
// the same action and target and, when a policy of the action reads the
// context, the same second and source address.
func (s *Set) Filter(p *Principal, base Request, targets []string) []string {
	if AlwaysAllowed(base.Method) {
		return targets
	}
	if base.Time.IsZero() {
		base.Time = s.cfg.clock.Now()
	}
	known := make([]decisionMark, len(targets))
	key, cacheable := s.filterKey(p, &base)
	if cacheable {
		s.fc.lookup(key, targets, known)
	}
	misses := s.decideList(p, &base, targets, known)
	if cacheable && misses > 0 {
		s.fc.store(key, targets, known)
	}
	out := make([]string, 0, len(targets))
	for i, t := range targets {
		if known[i] == markAllowed {
			out = append(out, t)
		}
	}
	return out
}

// decisionMark is a filtering decision: not taken yet, allowed or denied.
type decisionMark uint8

const (
	markUnknown decisionMark = iota
	markAllowed
	markDenied
)

// filterCache holds the filtering decisions a Set made, at most
// maxFilterDecisions of them; it is emptied when full. It belongs to its
// Set, so a policy reload, which makes a new Set, starts from nothing. The
// decisions are kept by everything but the target (a list's targets share
// it), then by target, so remembering or finding a list's decisions hashes
// the shared part once and each target's name once.
type filterCache struct {
	mu sync.Mutex
	m  map[filterKey]map[string]bool
	n  int // decisions held
}

const maxFilterDecisions = 1 << 15

// filterKey is everything a filtering decision depends on besides the set
// and the target: the principal (its entity is fixed when it is made), the
// action and target type, and the context of the request (sec and src),
// which is left out when no policy the action can match reads the context.
type filterKey struct {
	p      *Principal
	method string
	typ    types.EntityType
	sec    int64
	src    netip.Addr
}

// filterKey returns the key of base's decisions for p; false when they
// cannot be cached (the context holds tool arguments).
func (s *Set) filterKey(p *Principal, base *Request) (filterKey, bool) {
	if s.cfg.toolArgs && base.Args != nil {
		return filterKey{}, false
	}
	k := filterKey{p: p, method: base.Method, typ: base.TargetType}
	if s.idx.readsContext(base.Method) {
		k.sec, k.src = base.Time.Unix(), base.Source
	}
	return k, true
}

func (c *filterCache) lookup(k filterKey, targets []string, known []decisionMark) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.m[k]
	if len(m) == 0 {
		return
	}
	for i, t := range targets {
		if allow, ok := m[t]; ok {
			known[i] = markDenied
			if allow {
				known[i] = markAllowed
			}
		}
	}
}

func (c *filterCache) store(k filterKey, targets []string, known []decisionMark) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || c.n+len(targets) > maxFilterDecisions {
		c.m, c.n = map[filterKey]map[string]bool{}, 0
	}
	m := c.m[k]
	if m == nil {
		m = make(map[string]bool, min(len(targets), maxFilterDecisions))
		c.m[k] = m
	}
	for i, t := range targets {
		if c.n >= maxFilterDecisions {
			return
		}
		if _, ok := m[t]; !ok {
			c.n++
		}
		m[t] = known[i] == markAllowed
	}
}

// FilterTools returns the tool names p may call (tools/call), in order.
func (s *Set) FilterTools(p *Principal, names []string) []string {
	return s.Filter(p, Request{Method: "tools/call"}, names)
}

// FilterResources returns the resource URIs p may read (resources/read).
func (s *Set) FilterResources(p *Principal, uris []string) []string {
	return s.Filter(p, Request{Method: "resources/read"}, uris)
}

// FilterPrompts returns the prompt names p may get (prompts/get).
func (s *Set) FilterPrompts(p *Principal, names []string) []string {
	return s.Filter(p, Request{Method: "prompts/get"}, names)
}
