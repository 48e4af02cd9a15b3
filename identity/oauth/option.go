package oauth

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpca/mcpca/clock"
)

// Option configures New.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	clock        clock.Clock
	client       *http.Client
	logger       *slog.Logger
	leeway       time.Duration
	algs         []jose.SignatureAlgorithm
	scopes       []string // scopes_supported
	required     []string // scopes every token needs
	requireBound bool
	refetch      time.Duration // least time between two fetches of one issuer's keys
	keysMaxAge   time.Duration
	roleClaims   []string
	maxCache     int
	verifiers    []prefixed
	name         string
	introspect   *introspection
	failRate     float64
	failBurst    int
}

// prefixed is a BearerVerifier and the prefix of the credentials it takes.
type prefixed struct {
	prefix string
	v      BearerVerifier
}

// Defaults of the options.
const (
	DefaultLeeway        = 30 * time.Second
	MaxLeeway            = 5 * time.Minute
	DefaultKeyRefetch    = 30 * time.Second
	DefaultKeysMaxAge    = 15 * time.Minute
	DefaultMaxCachedJWTs = 10000
)

// DefaultAlgorithms are the JWS algorithms accepted by default: the
// asymmetric ones. "none" and the HMAC algorithms (HS256...) are never
// accepted, whatever WithAlgorithms says: a resource server holds no
// secret shared with the issuer, and an HMAC key taken from a public JWKS
// would let anyone sign.
var DefaultAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512}

// DefaultRoleClaims are the claims whose values become roles.
var DefaultRoleClaims = []string{"roles", "groups", "scope"}

// WithClock sets the clock that judges exp, nbf and iat and ages the
// cached keys and tokens. Default clock.Real.
func WithClock(c clock.Clock) Option { return optionFunc(func(cfg *config) { cfg.clock = c }) }

// WithHTTPClient sets the client that fetches the issuers' metadata and
// keys (for an issuer whose TLS certificate the system roots do not know).
// Default: a client with a 10-second timeout.
func WithHTTPClient(c *http.Client) Option { return optionFunc(func(cfg *config) { cfg.client = c }) }

// WithLogger sets where key fetches and their failures are logged.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(cfg *config) { cfg.logger = l }) }

// WithLeeway sets the clock skew allowed on exp, nbf and iat (default
// DefaultLeeway, at most MaxLeeway).
func WithLeeway(d time.Duration) Option { return optionFunc(func(cfg *config) { cfg.leeway = d }) }

// WithAlgorithms narrows the JWS algorithms accepted (default
// DefaultAlgorithms; none and HS* are refused at New).
func WithAlgorithms(algs ...jose.SignatureAlgorithm) Option {
	return optionFunc(func(cfg *config) { cfg.algs = algs })
}

// WithScopesSupported lists the scopes the protected resource metadata
// advertises (scopes_supported).
func WithScopesSupported(scopes ...string) Option {
	return optionFunc(func(cfg *config) { cfg.scopes = append(cfg.scopes, scopes...) })
}

// WithRequiredScopes makes every token need these scopes: one without them
// is answered 403 insufficient_scope, and the 401 challenge asks for them.
func WithRequiredScopes(scopes ...string) Option {
	return optionFunc(func(cfg *config) { cfg.required = append(cfg.required, scopes...) })
}

// WithRequireBoundTokens refuses tokens that are not bound to the client
// certificate presented with them (RFC 8705): a stolen token is then of no
// use without the certificate's key.
func WithRequireBoundTokens() Option {
	return optionFunc(func(cfg *config) { cfg.requireBound = true })
}

// WithKeyRefetchInterval bounds how often one issuer's keys are fetched
// again because a token names a key ID they do not hold (default
// DefaultKeyRefetch): a stream of tokens with made-up key IDs cannot make
// the server hammer the issuer.
func WithKeyRefetchInterval(d time.Duration) Option {
	return optionFunc(func(cfg *config) { cfg.refetch = d })
}

// WithKeysMaxAge sets how long fetched keys are used before they are
// fetched again (default DefaultKeysMaxAge), so that a key the issuer
// withdrew stops being accepted.
func WithKeysMaxAge(d time.Duration) Option {
	return optionFunc(func(cfg *config) { cfg.keysMaxAge = d })
}

// WithRoleClaims sets the claims whose values become the principal's roles
// (default DefaultRoleClaims: roles, groups, scope). A claim may be an array
// of strings or a space-separated string.
func WithRoleClaims(claims ...string) Option {
	return optionFunc(func(cfg *config) { cfg.roleClaims = claims })
}

// WithMaxCachedTokens bounds the cache of verified JWTs (default
// DefaultMaxCachedJWTs); it is emptied when full.
func WithMaxCachedTokens(n int) Option { return optionFunc(func(cfg *config) { cfg.maxCache = n }) }

// WithResourceName sets resource_name in the protected resource metadata.
func WithResourceName(name string) Option { return optionFunc(func(cfg *config) { cfg.name = name }) }

// WithBearerVerifier sends the bearer credentials that start with prefix
// (an API key's recognisable prefix, say) to v instead of the JWT path.
// The Resource still checks what v returns: the audience (when the token
// names one), expiry, certificate binding and required scopes.
func WithBearerVerifier(prefix string, v BearerVerifier) Option {
	return optionFunc(func(cfg *config) { cfg.verifiers = append(cfg.verifiers, prefixed{prefix, v}) })
}
