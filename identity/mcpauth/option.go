package mcpauth

import (
	"log/slog"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/oauth"
)

// Option configures New.
type Option interface{ apply(*config) }

type config struct {
	audit        *audit.Log
	failOpen     bool
	clock        clock.Clock
	logger       *slog.Logger
	toolArgs     bool
	sessionTTL   time.Duration
	maxSess      int
	maxSessPerID int
	stateKey     []byte
	tokens       *oauth.Resource
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// DefaultSessionTTL is how long a session binding is kept after its last
// request when WithSessionTTL does not say otherwise.
const DefaultSessionTTL = 24 * time.Hour

// WithAuditLog writes every decision to l. A request whose decision
// cannot be written is refused (CodeAuditFailed; the failure is logged), so
// that nothing is done that the log does not show; WithAuditFailOpen
// serves it instead.
func WithAuditLog(l *audit.Log) Option {
	return optionFunc(func(c *config) { c.audit = l })
}

// WithAuditFailOpen serves allowed requests whose decision could not be
// written to the audit log, logging each failure, instead of refusing them.
func WithAuditFailOpen() Option {
	return optionFunc(func(c *config) { c.failOpen = true })
}

// WithClock sets the clock that stamps requests (the policy's context.now
// and the audit records) and ages session bindings. Default clock.Real.
func WithClock(clk clock.Clock) Option {
	return optionFunc(func(c *config) { c.clock = clk })
}

// WithLogger sets where problems (audit write failures, requests that
// reach the middleware without passing Guard.Handler) are logged.
// Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// WithToolArguments passes the arguments of tools/call to the policy as
// policy.Request.Args (the policy must be loaded with
// policy.WithToolArguments to read them as context.args).
func WithToolArguments() Option {
	return optionFunc(func(c *config) { c.toolArgs = true })
}

// WithMaxSessions bounds the table of session bindings (default
// DefaultMaxSessions). When it is full, bindings unused for longer than the
// session TTL are dropped first, then the least recently used. A session
// whose binding was dropped is answered 404 for everyone, and its client
// starts a new one (see Guard.Handler).
func WithMaxSessions(n int) Option {
	return optionFunc(func(c *config) { c.maxSess = n })
}

// WithMaxSessionsPerIdentity bounds the session bindings of one identity
// (default DefaultMaxSessionsPerIdentity): an identity at its limit that
// starts another session drops its own least recently used binding (that
// session is answered 404 from then on), so that one identity cannot push
// everyone else's sessions out of the table.
func WithMaxSessionsPerIdentity(n int) Option {
	return optionFunc(func(c *config) { c.maxSessPerID = n })
}

// WithSessionTTL sets how long a session binding outlives the last request
// of its session (default DefaultSessionTTL). Use at least the SDK's
// StreamableHTTPOptions.SessionTimeout, or idle sessions the SDK still
// keeps are refused (404) before it ends them.
func WithSessionTTL(d time.Duration) Option {
	return optionFunc(func(c *config) { c.sessionTTL = d })
}

// WithStateKey sets the key (StateKeySize bytes) that seals the
// requestState of input-required results to the caller they are returned
// to. Give every replica of a server behind one address the same key, so a
// retry that reaches another replica opens; by default each Guard draws its
// own at random.
func WithStateKey(key []byte) Option {
	return optionFunc(func(c *config) { c.stateKey = append([]byte(nil), key...) })
}

// WithResourceServer makes the Guard an OAuth 2.1 resource server as well:
// a request may authenticate with a bearer access token that rs verifies
// (RFC 9068 JWTs of its issuers, certificate-bound ones per RFC 8705, and
// whatever BearerVerifier rs has, API keys say) instead of, or on top of,
// a client certificate. Refusals carry the WWW-Authenticate challenges of
// the MCP authorization specification (see Guard.WriteAuthError); serve
// rs.MetadataHandler at rs.MetadataPaths() (Guard.Server does), and accept
// connections without a client certificate (TLSConfig does).
func WithResourceServer(rs *oauth.Resource) Option {
	return optionFunc(func(c *config) { c.tokens = rs })
}
