package mcpauth

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/policy"
)

// Policy decides MCP requests: *policy.Live (reloaded from its files) and
// *policy.Set (fixed) are policies.
type Policy interface {
	Authorize(p *policy.Principal, r policy.Request) policy.Decision
	Filter(p *policy.Principal, base policy.Request, targets []string) []string
}

// Guard authenticates and authorizes the callers of one MCP server.
// Build one with New and use both Handler and Middleware. It is safe for
// concurrent use.
type Guard struct {
	v     *identity.Verifier
	authz Policy
	cfg   config

	// reqs maps the value of refHeader, set by Handler on each HTTP
	// request, to the caller of that request, for Middleware to find.
	reqs   sync.Map // string -> *Caller
	nextID atomic.Uint64

	// installed is set once Middleware is made (Install, Server,
	// MCPHandler): until then Handler refuses every request, so a Guard
	// whose half that authorizes is missing serves nothing.
	installed atomic.Bool

	// sessions holds the session bindings, at most cfg.maxSess; lru orders
	// them by last use, most recent first, so that expired bindings are
	// dropped from its back and, when the table is full, the least recently
	// used one is evicted. A session without a binding is refused to
	// everyone (see Handler).
	mu       sync.Mutex
	sessions map[string]*list.Element // of *binding
	lru      list.List
	perID    map[string]int // bindings per SPIFFE ID

	// principals remembers the Cedar principal of each identity the
	// Verifier returned (it returns the same *Identity for a certificate
	// until its cache is reset), so that a client opening many connections
	// with one certificate has its principal built once.
	pmu        sync.Mutex
	principals map[*identity.Identity]*policy.Principal
}

// Caller is the verified peer of one HTTP request: its identity, the
// Cedar principal built from it, and its source address.
type Caller struct {
	principal *policy.Principal
	source    netip.Addr
}

// Identity returns the caller's verified identity: its certificate's, or
// the one its token maps to (see identity/oauth).
func (c *Caller) Identity() *identity.Identity { return c.principal.Identity() }

// Auth returns how the caller authenticated (policy.AuthMTLS,
// policy.AuthToken, policy.AuthBoundToken or policy.AuthAPIKey).
func (c *Caller) Auth() policy.AuthMethod { return c.principal.Auth() }

// ID returns the caller's SPIFFE ID.
func (c *Caller) ID() string { return string(c.principal.UID().ID) }

// binding ties an MCP session to the SPIFFE ID that created it.
type binding struct {
	sid, id  string
	lastSeen time.Time
}

// sessionState is what the binding table says of a request's session.
type sessionState int

const (
	sessionNone    sessionState = iota // no Mcp-Session-Id
	sessionOwned                       // bound to the caller
	sessionForeign                     // bound to another identity
	sessionUnbound                     // not in the table: never bound, ended, expired or evicted
)

// connState is the per-connection cache that ConnContext installs.
type connState struct {
	mu        sync.Mutex
	ident     *identity.Identity
	principal *policy.Principal
}

type connKey struct{}

// refHeader carries, from Handler to Middleware, the key under which the
// request's caller is registered. Handler always overwrites what the client
// sent, so a client cannot choose it.
const refHeader = "Mcpca-Caller-Ref"

const sessionHeader = "Mcp-Session-Id"

// DefaultMaxSessions bounds the session binding table when WithMaxSessions
// does not say otherwise.
const DefaultMaxSessions = 100000

// DefaultMaxSessionsPerIdentity bounds the bindings of one identity when
// WithMaxSessionsPerIdentity does not say otherwise.
const DefaultMaxSessionsPerIdentity = 1000

// maxPrincipals bounds the principal cache; it is emptied when full.
const maxPrincipals = 4096

// New returns a Guard that verifies client certificates with v and decides
// requests with authz.
func New(v *identity.Verifier, authz Policy, opts ...Option) (*Guard, error) {
	if v == nil {
		return nil, errorf("a verifier is required")
	}
	if authz == nil {
		return nil, errorf("an authorizer is required")
	}
	cfg := config{sessionTTL: DefaultSessionTTL, maxSess: DefaultMaxSessions, maxSessPerID: DefaultMaxSessionsPerIdentity}
	for _, o := range opts {
		o.apply(&cfg)
	}
	cfg.clock = clock.Or(cfg.clock)
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.sessionTTL <= 0 {
		return nil, errorf("session TTL must be positive, got %v", cfg.sessionTTL)
	}
	if cfg.maxSess <= 0 {
		return nil, errorf("the session limit must be positive, got %d", cfg.maxSess)
	}
	switch {
	case cfg.stateKey == nil:
		cfg.stateKey = newStateKey()
	case len(cfg.stateKey) != StateKeySize:
		return nil, errorf("the state key must be %d bytes, got %d", StateKeySize, len(cfg.stateKey))
	}
	if cfg.maxSessPerID <= 0 {
		return nil, errorf("the per-identity session limit must be positive, got %d", cfg.maxSessPerID)
	}
	return &Guard{v: v, authz: authz, cfg: cfg, sessions: make(map[string]*list.Element), perID: make(map[string]int),
		principals: make(map[*identity.Identity]*policy.Principal)}, nil
}

// ConnContext gives each connection a cache for the identity of its peer,
// so the Cedar principal is built once per connection rather than once per
// request. Set it as http.Server.ConnContext (or call it from yours).
// Without it Handler still works, building the principal per request.
func (g *Guard) ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &connState{})
}

// errorBody is the JSON body of a refused HTTP request.
type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, msg, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg, Detail: detail})
}

// ErrNoCredentials is Authenticate's error for a request with neither a
// client certificate nor (when the Guard accepts tokens) a bearer token.
var ErrNoCredentials = errorf("no client certificate and no bearer token")

// CertificateError is Authenticate's error for a client certificate that
// does not verify now.
type CertificateError struct{ Err error }

func (e *CertificateError) Error() string { return e.Err.Error() }
func (e *CertificateError) Unwrap() error { return e.Err }

// WriteAuthError answers a request that Authenticate refused, as the
// MCP authorization specification and RFC 6750 say:
//
//   - ErrNoCredentials: 401 {"error":"client certificate required"}; with
//     WithResourceServer, 401 {"error":"authentication required"} and
//     WWW-Authenticate: Bearer resource_metadata="...", so that an OAuth
//     client finds where to get a token;
//   - an *oauth.Error: its status (401 invalid_token, 403
//     insufficient_scope, 400 invalid_request), {"error":CODE,
//     "detail":why} and the challenge with error= and error_description=;
//     one with RetryAfter (a source past its failure budget): 429
//     {"error":"too many failed attempts","detail":why} with Retry-After;
//   - a CertificateError: 403 {"error":"client certificate rejected",
//     "detail":why}.
func (g *Guard) WriteAuthError(w http.ResponseWriter, err error) {
	var oe *oauth.Error
	rs := g.cfg.tokens
	switch {
	case errors.Is(err, ErrNoCredentials) && rs == nil:
		writeError(w, http.StatusUnauthorized, "client certificate required",
			"connect over TLS with a certificate issued by this server's CA")
	case errors.Is(err, ErrNoCredentials):
		w.Header().Set("WWW-Authenticate", rs.Challenge(nil))
		writeError(w, http.StatusUnauthorized, "authentication required",
			"present a client certificate of this server's CA or an OAuth access token (Authorization: Bearer); the metadata at "+rs.MetadataURL()+" names the authorization servers")
	case errors.As(err, &oe) && oe.RetryAfter > 0:
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(oe.RetryAfter.Seconds()))))
		writeError(w, http.StatusTooManyRequests, "too many failed attempts", oe.Description)
	case errors.As(err, &oe) && rs != nil:
		w.Header().Set("WWW-Authenticate", rs.Challenge(oe))
		writeError(w, oe.Status(), oe.Code, oe.Description)
	default:
		writeError(w, http.StatusForbidden, "client certificate rejected", err.Error())
	}
}

// Handler wraps next, normally an *mcp.StreamableHTTPHandler, so that
// every request must come from a verified caller (Authenticate: a client
// certificate, or with WithResourceServer an OAuth access token), and only
// once the Guard's middleware is installed on the MCP server (Install,
// MCPHandler or Server; until then a verified client gets 500
// {"error":"server misconfigured"}: a Handler without the half that
// authorizes serves nothing):
//
//   - 401 {"error":"client certificate required"} without TLS or without a
//     client certificate (with WithResourceServer: 401
//     {"error":"authentication required"} and the WWW-Authenticate
//     challenge when neither a certificate nor a token is presented, and
//     the token refusals of WriteAuthError);
//   - 403 {"error":"client certificate rejected","detail":...} when the
//     certificate does not verify (now: it may have expired or been revoked
//     since the handshake);
//   - 403 {"error":"session belongs to another identity"} when the request
//     names an Mcp-Session-Id that another identity created;
//   - 404 "session not found" (the SDK's answer for a session it does not
//     know) when it names a session the Guard holds no binding for: one that
//     never existed, ended, or whose binding expired or was evicted (see
//     WithSessionTTL and WithMaxSessions). The MCP specification has the
//     client start a new session then.
//
// Handler leaves the request's headers as the client sent them (without
// WithResourceServer an application may add its own bearer-token check
// inside it); the verified caller reaches Middleware and FromContext
// through a request header of its own that it always overwrites. Responses
// carry Cache-Control: private, no-store, since what they hold depends on
// who asked.
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(refHeader)
		c, err := g.Authenticate(r)
		if err != nil {
			g.WriteAuthError(w, err)
			return
		}
		if !g.installed.Load() {
			g.cfg.logger.Error("mcpauth: refusing a request: the Guard's middleware is not installed on the MCP server; call guard.Install(server), or build the handler with guard.MCPHandler or guard.Server")
			writeError(w, http.StatusInternalServerError, "server misconfigured",
				"the MCP server does not authorize requests (Guard.Install was not called): nothing is served until it does")
			return
		}
		id := string(c.principal.UID().ID)
		sid := r.Header.Get(sessionHeader)
		if sid != "" {
			switch g.checkSession(sid, id) {
			case sessionForeign:
				writeForeign(w)
				return
			case sessionUnbound:
				http.Error(w, "session not found", http.StatusNotFound)
				return
			}
		}
		ref := strconv.FormatUint(g.nextID.Add(1), 36)
		g.reqs.Store(ref, c)
		defer g.reqs.Delete(ref)
		r.Header.Set(refHeader, ref)
		bw := &bindingWriter{ResponseWriter: w, g: g, id: id, sid: sid}
		next.ServeHTTP(bw, r)
		if sid != "" && r.Method == http.MethodDelete && bw.status/100 == 2 {
			g.dropSession(sid)
		}
	})
}

func writeForeign(w http.ResponseWriter) {
	writeError(w, http.StatusForbidden, "session belongs to another identity",
		"start a new session: an MCP session can only be used by the identity that created it")
}

// lookupRef returns the caller Handler registered under ref.
func (g *Guard) lookupRef(ref string) *Caller {
	if ref == "" {
		return nil
	}
	v, ok := g.reqs.Load(ref)
	if !ok {
		return nil
	}
	return v.(*Caller)
}

// Authenticate verifies the caller of r now (so a certificate that
// expired or was revoked since the handshake is refused) and returns it,
// its principal from the connection's cache (ConnContext) when the
// verified identity has not changed. Handler calls it on every request; an
// intermediary that decides raw JSON-RPC messages (AuthorizeMessage) calls
// it itself, and answers its error with WriteAuthError.
//
// With WithResourceServer, a request that carries a bearer token is the
// token's caller (the certificate, when one is presented too, must verify,
// and a token bound to a certificate must come with that one); a token
// that does not verify is refused, never passed over for the certificate.
// A request with neither is ErrNoCredentials.
func (g *Guard) Authenticate(r *http.Request) (*Caller, error) {
	var ident *identity.Identity
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		var err error
		if ident, err = g.v.Verify(r.TLS.PeerCertificates, identity.KindClient); err != nil {
			return nil, &CertificateError{err}
		}
	}
	if rs := g.cfg.tokens; rs != nil {
		tok, present, err := oauth.BearerToken(r.Header)
		if err != nil {
			return nil, err
		}
		if present {
			ctx := r.Context()
			if src := remoteAddr(r.RemoteAddr); src.IsValid() {
				ctx = oauth.WithSource(ctx, src.String())
			}
			t, how, err := rs.Verify(ctx, tok, ident)
			if err != nil {
				return nil, err
			}
			return &Caller{principal: g.principal(t.Identity, how), source: remoteAddr(r.RemoteAddr)}, nil
		}
	}
	if ident == nil {
		return nil, ErrNoCredentials
	}
	c := &Caller{source: remoteAddr(r.RemoteAddr)}
	cs, _ := r.Context().Value(connKey{}).(*connState)
	if cs == nil {
		c.principal = g.principal(ident, policy.AuthMTLS)
		return c, nil
	}
	cs.mu.Lock()
	if cs.ident != ident {
		cs.ident, cs.principal = ident, g.principal(ident, policy.AuthMTLS)
	}
	c.principal = cs.principal
	cs.mu.Unlock()
	return c, nil
}

// principal returns the Cedar principal of ident authenticated by how,
// built once. (A certificate's identity always comes with AuthMTLS, a
// token's with the one method its binding gives, so the identity alone is
// the key.)
func (g *Guard) principal(ident *identity.Identity, how policy.AuthMethod) *policy.Principal {
	g.pmu.Lock()
	defer g.pmu.Unlock()
	if p := g.principals[ident]; p != nil {
		return p
	}
	if g.principals == nil || len(g.principals) >= maxPrincipals {
		g.principals = make(map[*identity.Identity]*policy.Principal)
	}
	p := policy.NewPrincipalFor(ident, how)
	g.principals[ident] = p
	return p
}

func remoteAddr(s string) netip.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// checkSession tells whether session sid is bound to id, to another
// identity, or not bound at all, and marks an owned binding as just used.
func (g *Guard) checkSession(sid, id string) sessionState {
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.sessions[sid]
	if e == nil {
		return sessionUnbound
	}
	b := e.Value.(*binding)
	if b.id != id {
		return sessionForeign
	}
	b.lastSeen = g.cfg.clock.Now()
	g.lru.MoveToFront(e)
	return sessionOwned
}

// bindSession records that id created session sid, unless it is bound. It
// first drops the bindings unused for longer than the session TTL and, if
// the table is still full, evicts the least recently used ones.
func (g *Guard) bindSession(sid, id string) {
	now := g.cfg.clock.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.sessions[sid]; ok {
		return
	}
	for e := g.lru.Back(); e != nil; e = g.lru.Back() {
		if b := e.Value.(*binding); len(g.sessions) < g.cfg.maxSess && now.Sub(b.lastSeen) <= g.cfg.sessionTTL {
			break
		}
		g.removeLocked(e)
	}
	// One identity at its own limit makes way with its own least recently
	// used binding, never another identity's.
	if g.perID[id] >= g.cfg.maxSessPerID {
		for e := g.lru.Back(); e != nil; e = e.Prev() {
			if e.Value.(*binding).id == id {
				g.removeLocked(e)
				break
			}
		}
	}
	g.sessions[sid] = g.lru.PushFront(&binding{sid: sid, id: id, lastSeen: now})
	g.perID[id]++
}

func (g *Guard) removeLocked(e *list.Element) {
	b := e.Value.(*binding)
	g.lru.Remove(e)
	delete(g.sessions, b.sid)
	if g.perID[b.id]--; g.perID[b.id] <= 0 {
		delete(g.perID, b.id)
	}
}

func (g *Guard) dropSession(sid string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if e := g.sessions[sid]; e != nil {
		g.removeLocked(e)
	}
}

// sessionCount returns the number of session bindings (for tests).
func (g *Guard) sessionCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// bindingWriter binds the session the SDK announces in its response
// headers to the identity of the request that created it, and marks every
// response private.
type bindingWriter struct {
	http.ResponseWriter
	g       *Guard
	id, sid string
	status  int
}

func (w *bindingWriter) WriteHeader(code int) {
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(code) // let net/http report the superfluous call
		return
	}
	w.status = code
	// The SDK sets its own Cache-Control (no-cache, no-transform for
	// event streams); what is answered depends on who asked, so no
	// shared cache may keep it.
	cc := "private, no-store"
	if strings.Contains(w.Header().Get("Cache-Control"), "no-transform") {
		cc += ", no-transform"
	}
	w.Header().Set("Cache-Control", cc)
	if s := w.Header().Get(sessionHeader); s != "" && s != w.sid {
		w.g.bindSession(s, w.id)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *bindingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Flush lets server-sent events through.
func (w *bindingWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *bindingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
