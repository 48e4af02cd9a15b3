package policy

import (
	"encoding/json"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cedar-policy/cedar-go/types"

	"github.com/mcpca/mcpca/identity"
)

// The entity types of the mcpca Cedar model. Users write policies against
// these names; they are part of the public interface.
const (
	TypeClient      types.EntityType = "Mcp::Client"
	TypeServer      types.EntityType = "Mcp::Server"
	TypeRole        types.EntityType = "Mcp::Role"
	TypeTrustDomain types.EntityType = "Mcp::TrustDomain"
	TypeAction      types.EntityType = "Mcp::Action"
	TypeTool        types.EntityType = "Mcp::Tool"
	TypeResource    types.EntityType = "Mcp::Resource"
	TypePrompt      types.EntityType = "Mcp::Prompt"
)

// SelfID is the entity ID of the resource Mcp::Server::"self", the target of
// methods that name no tool, resource or prompt.
const SelfID = "self"

// Actions returns the JSON-RPC methods a policy may name as
// Mcp::Action::"<method>". Requests for other methods are decided only by
// policies whose action scope is unconstrained.
//
// initialize, ping and notifications/* are not in the list: they are always
// allowed, so a policy naming them is a load error rather than a rule that
// silently has no effect.
func Actions() []string { return slices.Clone(actions) }

var actions = []string{
	"tools/list",
	"tools/call",
	"resources/list",
	"resources/templates/list",
	"resources/read",
	"resources/subscribe",
	"resources/unsubscribe",
	"prompts/list",
	"prompts/get",
	"completion/complete",
	"logging/setLevel",
	"sampling/createMessage",
	"elicitation/create",
	"roots/list",
	"tasks/get",
	"tasks/list",
	"tasks/result",
	"tasks/cancel",
}

// AlwaysAllowed reports whether method is allowed to every verified caller
// without consulting any policy: the handshake (initialize, and
// server/discover in protocol 2026-07-28), ping and notifications. It is
// the one table the server adapter (mcpauth) and `mcpca policy explain`
// both use.
func AlwaysAllowed(method string) bool {
	return method == "initialize" || method == "server/discover" || method == "ping" || strings.HasPrefix(method, "notifications/")
}

// listActions maps each list method to the action its items are filtered
// by.
var listActions = map[string]string{
	"tools/list":               "tools/call",
	"resources/list":           "resources/read",
	"resources/templates/list": "resources/read",
	"prompts/list":             "prompts/get",
}

// ListAction returns the action by which the items of a list method's
// result are filtered (tools/list: tools/call, resources/list and
// resources/templates/list: resources/read, prompts/list: prompts/get), and
// false for a method that is not a list.
func ListAction(method string) (string, bool) {
	a, ok := listActions[method]
	return a, ok
}

// TargetType returns the entity type of the target of method: Mcp::Tool for
// tools/call, Mcp::Resource for resources/read, subscribe and unsubscribe,
// Mcp::Prompt for prompts/get, and Mcp::Server (the "self" entity) otherwise.
func TargetType(method string) types.EntityType {
	switch method {
	case "tools/call":
		return TypeTool
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return TypeResource
	case "prompts/get":
		return TypePrompt
	}
	return TypeServer
}

// AuthMethod says how a caller authenticated; policies read it as
// context.auth.
type AuthMethod string

// The ways a caller authenticates.
const (
	// AuthMTLS: a client certificate of the CA, and nothing else.
	AuthMTLS AuthMethod = "mtls"
	// AuthToken: an OAuth access token that is not bound to a certificate
	// (a bearer token: whoever holds it can use it).
	AuthToken AuthMethod = "token"
	// AuthBoundToken: an OAuth access token bound to the client
	// certificate presented with it (RFC 8705).
	AuthBoundToken AuthMethod = "bound-token"
	// AuthAPIKey: an API key.
	AuthAPIKey AuthMethod = "api-key"
)

// Principal is an identity prepared for authorization: its Cedar entity is
// built once, so build one per connection and reuse it for every request.
type Principal struct {
	ident   *identity.Identity
	auth    AuthMethod
	uid     types.EntityUID
	parents []types.EntityUID
	entity  types.Entity
	serial  string // ident.SerialHex(), for audit records

	// ctx caches the last context built for this principal: a connection
	// makes its requests from one address, many within one second.
	ctx atomic.Pointer[contextEntry]
	// last caches the principal's last decision (see Set.Authorize).
	last atomic.Pointer[decisionEntry]
}

type contextEntry struct {
	cfg *config
	sec int64
	src netip.Addr
	rec types.Record
}

// NewPrincipal prepares ident, the identity of a client certificate, for
// authorization (context.auth is "mtls").
func NewPrincipal(ident *identity.Identity) *Principal { return NewPrincipalFor(ident, AuthMTLS) }

// NewPrincipalFor prepares ident for authorization as a caller that
// authenticated by how (context.auth). An identity from a token (see
// identity/oauth) gives the same principal type, roles and attributes as a
// certificate with the same SPIFFE ID.
func NewPrincipalFor(ident *identity.Identity, how AuthMethod) *Principal {
	typ := TypeClient
	if ident.ID.Kind == identity.KindServer {
		typ = TypeServer
	}
	p := &Principal{ident: ident, auth: how, uid: types.NewEntityUID(typ, types.String(ident.ID.String())), serial: ident.SerialHex()}
	roles := make([]types.Value, 0, len(ident.Roles))
	for _, r := range ident.Roles {
		uid := types.NewEntityUID(TypeRole, types.String(r))
		if !slices.Contains(p.parents, uid) {
			p.parents = append(p.parents, uid)
			roles = append(roles, types.String(r))
		}
	}
	p.parents = append(p.parents, types.NewEntityUID(TypeTrustDomain, types.String(ident.ID.TrustDomain)))
	attrs := make(types.RecordMap, len(ident.Attributes))
	for k, v := range ident.Attributes {
		attrs[types.String(k)] = types.String(v)
	}
	p.entity = types.Entity{
		UID:     p.uid,
		Parents: types.NewEntityUIDSet(p.parents...),
		Attributes: types.NewRecord(types.RecordMap{
			"id":           types.String(ident.ID.String()),
			"trust_domain": types.String(ident.ID.TrustDomain),
			"kind":         types.String(ident.ID.Kind),
			"name":         types.String(ident.ID.Name),
			"serial":       types.String(p.serial),
			"fingerprint":  types.String(ident.FingerprintHex()),
			"roles":        types.NewSet(roles...),
			"not_before":   types.NewDatetime(ident.NotBefore),
			"not_after":    types.NewDatetime(ident.NotAfter),
			"attrs":        types.NewRecord(attrs),
		}),
	}
	return p
}

// Identity returns the identity p was built from.
func (p *Principal) Identity() *identity.Identity { return p.ident }

// Auth returns how the principal's caller authenticated.
func (p *Principal) Auth() AuthMethod { return p.auth }

// UID returns the principal's Cedar entity UID.
func (p *Principal) UID() types.EntityUID { return p.uid }

// principalAttrs, resourceAttrs and contextAttrs are the attribute names a
// policy may read with the dot operator; anything else is a load error.
var (
	principalAttrs = []string{"id", "trust_domain", "kind", "name", "serial", "fingerprint", "roles", "not_before", "not_after", "attrs"}
	resourceAttrs  = []string{"name", "uri"}
	contextAttrs   = []string{"now", "hour", "minute", "weekday", "source_address", "auth"}
)

// Request is one MCP request to decide.
type Request struct {
	// Method is the JSON-RPC method, e.g. "tools/call".
	Method string
	// Target is the tool name, resource URI or prompt name. It is ignored
	// for methods without a target, whose resource is Mcp::Server::"self".
	Target string
	// TargetType overrides the entity type of Target (for example Mcp::Prompt
	// or Mcp::Resource for completion/complete); empty means TargetType(Method).
	TargetType types.EntityType
	// Source is the peer's address; the zero value means unknown.
	Source netip.Addr
	// Args are the tool call's arguments, as decoded from JSON. They reach
	// the context only with WithToolArguments.
	Args map[string]any
	// Time is the request time; the zero value means the clock's now.
	Time time.Time
}

// resourceUID returns the Cedar resource of r.
func (r *Request) resourceUID() types.EntityUID {
	typ := r.TargetType
	if typ == "" {
		typ = TargetType(r.Method)
	}
	if typ == TypeServer {
		return types.NewEntityUID(TypeServer, SelfID)
	}
	return types.NewEntityUID(typ, types.String(r.Target))
}

// attrsOf returns the attribute names of the resource entities of type t.
func attrsOf(t types.EntityType) []string {
	switch t {
	case TypeTool, TypePrompt:
		return []string{"name"}
	case TypeResource:
		return []string{"uri"}
	}
	return nil
}

// resourceEntity returns the entity of a target, from entityCache when it
// was built before.
func resourceEntity(uid types.EntityUID) types.Entity {
	if e, ok := entityCache.get(uid); ok {
		return e
	}
	e := buildResourceEntity(uid)
	entityCache.put(uid, e)
	return e
}

// entityCache keeps the resource entities built so far. An entity is a
// function of its UID alone (its one attribute is the UID's ID), so a cached
// one is the entity that would be built, whatever policy set is in force;
// building one costs a map, a sort and a hash inside cedar-go (about 400 ns
// and 7 allocations), which filtering a list of a thousand tools paid per
// tool and per list. It holds at most maxCachedEntities and is emptied when
// full, so names an upstream invents cannot grow it without bound.
var entityCache = &entities{m: make(map[types.EntityUID]types.Entity)}

const maxCachedEntities = 4096

type entities struct {
	mu sync.RWMutex
	m  map[types.EntityUID]types.Entity
}

func (c *entities) get(uid types.EntityUID) (types.Entity, bool) {
	c.mu.RLock()
	e, ok := c.m[uid]
	c.mu.RUnlock()
	return e, ok
}

// fill sets each of ents, whose UIDs are set, to the entity of its UID,
// built and kept when it is not kept already: the entities of a list, with
// the lock taken once.
func (c *entities) fill(ents []types.Entity) {
	missing := false
	c.mu.RLock()
	for i := range ents {
		if e, ok := c.m[ents[i].UID]; ok {
			ents[i] = e
		} else {
			missing = true
		}
	}
	c.mu.RUnlock()
	if !missing {
		return
	}
	for i := range ents {
		if ents[i].Attributes.Len() == 0 { // not kept (or without attributes: looked up again)
			ents[i] = resourceEntity(ents[i].UID)
		}
	}
}

func (c *entities) put(uid types.EntityUID, e types.Entity) {
	c.mu.Lock()
	if len(c.m) >= maxCachedEntities {
		clear(c.m)
	}
	c.m[uid] = e
	c.mu.Unlock()
}

// buildResourceEntity builds the entity of a target.
func buildResourceEntity(uid types.EntityUID) types.Entity {
	e := types.Entity{UID: uid}
	switch uid.Type {
	case TypeTool, TypePrompt:
		e.Attributes = types.NewRecord(types.RecordMap{"name": uid.ID})
	case TypeResource:
		e.Attributes = types.NewRecord(types.RecordMap{"uri": uid.ID})
	}
	return e
}

// Decision is the answer to one request.
type Decision struct {
	// Allow is true when the request may proceed.
	Allow bool
	// Policies are the IDs of the policies that determined the decision,
	// sorted: the forbids that matched for a denial, the permits that
	// matched for an allowance. Empty for a default deny and for methods
	// that are always allowed.
	Policies []string
	// Errors are evaluation errors ("<policy id>: <message>"). A permit
	// that fails to evaluate is skipped, as Cedar specifies; a forbid that
	// fails denies (Reason "forbid errored", the forbid in Policies), so a
	// missing attribute never lets through what a forbid was written to
	// stop. `mcpca policy check` warns about unguarded attribute reads.
	Errors []string
	// Reason is a short human explanation: "always allowed",
	// "permitted", "forbidden", "forbid errored" or "no policy permits".
	Reason string
}

// String renders the decision as "allow" or "deny".
func (d Decision) String() string {
	if d.Allow {
		return "allow"
	}
	return "deny"
}

// requestEnv holds the per-request Cedar inputs; it implements
// types.EntityGetter over the principal and the resource. The resource
// entity is built only if a policy asks for it.
type requestEnv struct {
	p      *Principal
	resUID types.EntityUID
	res    *types.Entity
	built  types.Entity
}

// Get implements types.EntityGetter.
func (e *requestEnv) Get(uid types.EntityUID) (types.Entity, bool) {
	if uid == e.p.uid {
		return e.p.entity, true
	}
	if uid == e.resUID {
		if e.res == nil {
			e.built = resourceEntity(uid)
			e.res = &e.built
		}
		return *e.res, true
	}
	return types.Entity{}, false
}

var unknownAddr = types.IPAddr(netip.PrefixFrom(netip.IPv4Unspecified(), 32))

// contextRecord returns the Cedar context of r for principal p (nil: no
// caching). The time is truncated to the second, so p's cached context
// serves every request of the same second from the same address.
func (c *config) contextRecord(p *Principal, r *Request, now time.Time) types.Record {
	sec := now.Unix()
	cacheable := p != nil && !(c.toolArgs && r.Args != nil)
	if cacheable {
		if e := p.ctx.Load(); e != nil && e.cfg == c && e.sec == sec && e.src == r.Source {
			return e.rec
		}
	}
	auth := AuthMTLS
	if p != nil && p.auth != "" {
		auth = p.auth
	}
	rec := c.buildContext(r, time.Unix(sec, 0), auth)
	if cacheable {
		p.ctx.Store(&contextEntry{cfg: c, sec: sec, src: r.Source, rec: rec})
	}
	return rec
}

func (c *config) buildContext(r *Request, now time.Time, auth AuthMethod) types.Record {
	local := now.In(c.loc)
	src := unknownAddr
	if r.Source.IsValid() {
		a := r.Source.Unmap()
		src = types.IPAddr(netip.PrefixFrom(a, a.BitLen()))
	}
	m := types.RecordMap{
		"now":            types.NewDatetime(now),
		"hour":           types.Long(local.Hour()),
		"minute":         types.Long(local.Minute()),
		"weekday":        types.Long(local.Weekday()),
		"source_address": src,
		"auth":           types.String(auth),
	}
	if c.toolArgs {
		m["args"] = argsRecord(r.Args)
	}
	return types.NewRecord(m)
}

// argsRecord converts JSON-decoded tool arguments to a Cedar record. Strings,
// booleans, integral numbers, arrays and objects convert; other numbers
// become decimals when Cedar can hold them and are dropped otherwise.
func argsRecord(args map[string]any) types.Record {
	m := make(types.RecordMap, len(args))
	for k, v := range args {
		if cv, ok := toValue(v, 0); ok {
			m[types.String(k)] = cv
		}
	}
	return types.NewRecord(m)
}

const maxArgDepth = 16

func toValue(v any, depth int) (types.Value, bool) {
	if depth > maxArgDepth {
		return nil, false
	}
	switch v := v.(type) {
	case string:
		return types.String(v), true
	case bool:
		return types.Boolean(v), true
	case int:
		return types.Long(v), true
	case int64:
		return types.Long(v), true
	case float64:
		return floatValue(v)
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return types.Long(i), true
		}
		f, err := v.Float64()
		if err != nil {
			return nil, false
		}
		return floatValue(f)
	case []any:
		vals := make([]types.Value, 0, len(v))
		for _, e := range v {
			if cv, ok := toValue(e, depth+1); ok {
				vals = append(vals, cv)
			}
		}
		return types.NewSet(vals...), true
	case map[string]any:
		m := make(types.RecordMap, len(v))
		for k, e := range v {
			if cv, ok := toValue(e, depth+1); ok {
				m[types.String(k)] = cv
			}
		}
		return types.NewRecord(m), true
	}
	return nil, false
}

func floatValue(f float64) (types.Value, bool) {
	if f == math.Trunc(f) && f >= math.MinInt64 && f < math.MaxInt64 {
		return types.Long(int64(f)), true
	}
	const scale = 10000 // Cedar decimals have four fractional digits
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f*scale) >= math.MaxInt64 {
		return nil, false
	}
	d, err := types.NewDecimal(int64(math.Round(f*scale)), -4)
	if err != nil {
		return nil, false
	}
	return d, true
}

// sortedIDs returns the policy IDs of reasons, sorted.
func sortedIDs(reasons []types.DiagnosticReason) []string {
	if len(reasons) == 0 {
		return nil
	}
	out := make([]string, len(reasons))
	for i, r := range reasons {
		out[i] = string(r.PolicyID)
	}
	sort.Strings(out)
	return out
}
