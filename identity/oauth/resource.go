package oauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/internal/ratelimit"
)

// Resource is an OAuth 2.1 protected resource (an MCP server or gateway):
// it verifies the access tokens of its trusted issuers, serves its RFC 9728
// metadata and writes the WWW-Authenticate challenges. It is safe for
// concurrent use.
type Resource struct {
	cfg   config
	fails *ratelimit.Failures
	limitLog
	issuers  []*issuerState
	resource atomic.Pointer[string]

	mu     sync.Mutex
	cache  map[string]*Token       // verified JWTs, by the token itself
	opaque map[string]introspected // introspected opaque tokens
}

// New returns the protected resource identified by resource (its URL,
// e.g. https://mcp.example.com/mcp: tokens must carry it in aud, RFC
// 8707) that accepts the tokens of issuers. resource may be "" when it is
// only known once the server listens: call SetResource before serving.
func New(resource string, issuers []Issuer, opts ...Option) (*Resource, error) {
	cfg := config{leeway: DefaultLeeway, algs: DefaultAlgorithms, refetch: DefaultKeyRefetch,
		keysMaxAge: DefaultKeysMaxAge, roleClaims: DefaultRoleClaims, maxCache: DefaultMaxCachedJWTs,
		failRate: DefaultFailureRate, failBurst: DefaultFailureBurst}
	for _, o := range opts {
		o.apply(&cfg)
	}
	cfg.clock = clock.Or(cfg.clock)
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.client == nil {
		cfg.client = &http.Client{Timeout: 10 * time.Second}
	}
	switch {
	case cfg.leeway < 0 || cfg.leeway > MaxLeeway:
		return nil, errorf("the leeway must be between 0 and %v, got %v", MaxLeeway, cfg.leeway)
	case cfg.refetch <= 0 || cfg.keysMaxAge <= 0:
		return nil, errorf("the key refetch interval and maximum age must be positive")
	case cfg.maxCache <= 0:
		return nil, errorf("the token cache bound must be positive, got %d", cfg.maxCache)
	case len(issuers) == 0 && len(cfg.verifiers) == 0:
		return nil, errorf("no token issuer: name at least one")
	case len(cfg.algs) == 0:
		return nil, errorf("no signature algorithm accepted")
	case cfg.failBurst < 1 || cfg.failRate <= 0:
		return nil, errorf("failure limit %v/s, burst %d: both must be positive", cfg.failRate, cfg.failBurst)
	}
	for _, a := range cfg.algs {
		if a == "none" || strings.HasPrefix(string(a), "HS") {
			return nil, errorf("algorithm %s is never accepted: a resource server verifies with the issuer's public keys", a)
		}
		if !slices.Contains(DefaultAlgorithms, a) {
			return nil, errorf("unknown signature algorithm %q", a)
		}
	}
	for _, p := range cfg.verifiers {
		if p.prefix == "" || p.v == nil {
			return nil, errorf("a bearer verifier needs a prefix and a verifier")
		}
	}
	r := &Resource{cfg: cfg, fails: ratelimit.New(cfg.failRate, cfg.failBurst), cache: map[string]*Token{}, opaque: map[string]introspected{}}
	for _, is := range issuers {
		if err := is.check(); err != nil {
			return nil, err
		}
		if r.forIssuer(is.URL) != nil {
			return nil, errorf("issuer %s named twice", is.URL)
		}
		r.issuers = append(r.issuers, &issuerState{Issuer: is, r: r})
	}
	if in := cfg.introspect; in != nil && r.forIssuer(in.issuer) == nil {
		return nil, errorf("introspection at %s, which is not one of the token issuers", in.issuer)
	}
	if resource != "" {
		if err := r.SetResource(resource); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// SetResource sets the resource identifier, for a Resource made before
// its server's address was known. It must be an https URL without a
// fragment (RFC 8707 section 2).
func (r *Resource) SetResource(resource string) error {
	u, err := url.Parse(resource)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Fragment != "" {
		return errorf("resource %q: want an https:// URL without a fragment", resource)
	}
	r.resource.Store(&resource)
	return nil
}

// ResourceURL returns the resource identifier ("" until set).
func (r *Resource) ResourceURL() string {
	if p := r.resource.Load(); p != nil {
		return *p
	}
	return ""
}

// Issuers returns the URLs of the trusted issuers.
func (r *Resource) Issuers() []string {
	out := make([]string, len(r.issuers))
	for i, is := range r.issuers {
		out[i] = is.URL
	}
	return out
}

// Verify verifies a bearer token presented with the client certificate
// whose verified identity is peer (nil: none) and returns it with how the
// caller authenticated: policy.AuthBoundToken when the token is bound to
// peer's certificate (RFC 8705), else the token's own method. A JWT's
// signature is checked once; the verified token is cached until it
// expires, and every use checks its time, audience and binding again.
//
// Refusals are *Error: invalid_token (401) for a token that is malformed,
// of another issuer or audience, expired, wrongly signed, bound to another
// certificate (or to one not presented), or unbound where bound tokens are
// required; insufficient_scope (403) for one without the required scopes.
//
// Each refusal is logged with the source (WithSource) and the reason, never
// the credential, and counted against the source's budget
// (WithFailureLimit): a source past it is refused at once with a 429 Error.
func (r *Resource) Verify(ctx context.Context, token string, peer *identity.Identity) (*Token, policy.AuthMethod, error) {
	now := r.cfg.clock.Now()
	src := SourceFrom(ctx)
	if err := r.limited(src, now); err != nil {
		return nil, "", err
	}
	t, err := r.token(ctx, token, now)
	if err == nil {
		var how policy.AuthMethod
		if how, err = r.check(t, peer, now); err == nil {
			return t, how, nil
		}
	}
	r.refused(src, now, err)
	return nil, "", err
}

// token returns the verified token, from the cache when it was seen.
func (r *Resource) token(ctx context.Context, token string, now time.Time) (*Token, error) {
	if token == "" {
		return nil, &Error{Code: CodeInvalidRequest, Description: "empty bearer token"}
	}
	for _, p := range r.cfg.verifiers {
		if strings.HasPrefix(token, p.prefix) {
			t, err := p.v.VerifyBearer(ctx, token)
			if err != nil {
				var oe *Error
				if errors.As(err, &oe) {
					return nil, oe
				}
				return nil, invalidToken("%v", err)
			}
			if t == nil || t.Identity == nil {
				return nil, invalidToken("the credential names no principal")
			}
			return t, nil
		}
	}
	if !looksLikeJWT(token) {
		if r.cfg.introspect != nil {
			return r.introspect(ctx, token, now)
		}
		return nil, invalidToken("not a JWT access token")
	}
	r.mu.Lock()
	t := r.cache[token]
	r.mu.Unlock()
	if t != nil {
		return t, nil
	}
	t, err := r.verifyJWT(ctx, token, now)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if len(r.cache) >= r.cfg.maxCache {
		r.cache = map[string]*Token{}
	}
	r.cache[token] = t
	r.mu.Unlock()
	return t, nil
}

// checkTime refuses a token outside its validity, with the leeway.
func (r *Resource) checkTime(t *Token, now time.Time) error {
	if !t.Expiry.IsZero() && !now.Before(t.Expiry.Add(r.cfg.leeway)) {
		return invalidToken("the token expired at %s", t.Expiry.UTC().Format(time.RFC3339))
	}
	if !t.NotBefore.IsZero() && now.Add(r.cfg.leeway).Before(t.NotBefore) {
		return invalidToken("the token is not valid before %s", t.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// check applies what depends on the request: time, audience, binding,
// scopes.
func (r *Resource) check(t *Token, peer *identity.Identity, now time.Time) (policy.AuthMethod, error) {
	if err := r.checkTime(t, now); err != nil {
		return "", err
	}
	res := r.ResourceURL()
	if res == "" {
		return "", invalidToken("this server does not know its resource identifier yet")
	}
	if t.Method != policy.AuthAPIKey || len(t.Audience) > 0 {
		if !slices.Contains(t.Audience, res) {
			return "", invalidToken("the token is for another resource (aud %s), not %s", strings.Join(truncated(t.Audience), ", "), res)
		}
	}
	how := t.Method
	switch {
	case t.OtherConfirmation && t.Thumbprint == nil:
		return "", invalidToken("the token is bound to a key by a method this server does not check (only cnf.x5t#S256, RFC 8705)")
	case t.Thumbprint != nil && peer == nil:
		return "", invalidToken("the token is bound to a client certificate (cnf.x5t#S256): present that certificate")
	case t.Thumbprint != nil && subtle.ConstantTimeCompare(t.Thumbprint, peer.Fingerprint[:]) != 1:
		return "", invalidToken("the token is bound to another client certificate than the one presented")
	case t.Thumbprint != nil:
		how = policy.AuthBoundToken
	case r.cfg.requireBound:
		return "", invalidToken("this resource accepts only certificate-bound tokens (RFC 8705): get one with the client certificate")
	}
	for _, s := range r.cfg.required {
		if !t.HasScope(s) {
			return "", &Error{Code: CodeInsufficientScope, Description: "the token lacks scope " + s, Scope: strings.Join(r.cfg.required, " ")}
		}
	}
	return how, nil
}

func truncated(list []string) []string {
	out := make([]string, 0, min(len(list), 4))
	for i, s := range list {
		if i == 4 {
			out = append(out, "...")
			break
		}
		out = append(out, truncate(s))
	}
	return out
}

// BearerToken returns the token of an "Authorization: Bearer" header of h
// (RFC 6750 section 2.1), false when there is none. More than one
// Authorization header, or one that is not a well-formed bearer
// credential, is an invalid_request Error.
func BearerToken(h http.Header) (string, bool, error) {
	vals := h.Values("Authorization")
	if len(vals) == 0 {
		return "", false, nil
	}
	if len(vals) > 1 {
		return "", true, &Error{Code: CodeInvalidRequest, Description: "more than one Authorization header"}
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", true, &Error{Code: CodeInvalidRequest, Description: "the Authorization header is not a Bearer credential"}
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || len(tok) > maxTokenBytes || strings.ContainsAny(tok, " \t,\"") {
		return "", true, &Error{Code: CodeInvalidRequest, Description: "the bearer token is empty, too long or malformed"}
	}
	return tok, true, nil
}

// maxTokenBytes bounds a bearer token.
const maxTokenBytes = 16 << 10

// MetadataURL returns the URL of the resource's RFC 9728 metadata: the
// well-known path inserted between the resource's host and path.
func (r *Resource) MetadataURL() string {
	u, err := url.Parse(r.ResourceURL())
	if err != nil || u.Host == "" {
		return ""
	}
	path := strings.TrimSuffix(u.Path, "/")
	u.Path, u.RawPath, u.RawQuery = WellKnownPath+path, "", ""
	return u.String()
}

// WellKnownPath is RFC 9728's well-known path.
const WellKnownPath = "/.well-known/oauth-protected-resource"

// MetadataPaths returns the paths to serve MetadataHandler at: the
// path-suffixed form of RFC 9728 (/.well-known/oauth-protected-resource/mcp
// for https://host/mcp) and the bare well-known path, which clients of
// earlier MCP revisions ask.
func (r *Resource) MetadataPaths() []string {
	out := []string{WellKnownPath}
	if u, err := url.Parse(r.ResourceURL()); err == nil {
		if p := strings.TrimSuffix(u.Path, "/"); p != "" {
			out = append(out, WellKnownPath+p)
		}
	}
	return out
}

// Metadata is the RFC 9728 protected resource metadata document.
type Metadata struct {
	Resource                              string   `json:"resource"`
	AuthorizationServers                  []string `json:"authorization_servers"`
	ScopesSupported                       []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported                []string `json:"bearer_methods_supported"`
	TLSClientCertificateBoundAccessTokens bool     `json:"tls_client_certificate_bound_access_tokens"`
	ResourceSigningAlgValuesSupported     []string `json:"resource_signing_alg_values_supported,omitempty"`
	ResourceName                          string   `json:"resource_name,omitempty"`
}

// Metadata returns the resource's metadata.
func (r *Resource) Metadata() Metadata {
	scopes := slices.Clone(r.cfg.scopes)
	for _, s := range r.cfg.required {
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	return Metadata{Resource: r.ResourceURL(), AuthorizationServers: r.Issuers(), ScopesSupported: scopes,
		BearerMethodsSupported: []string{"header"}, TLSClientCertificateBoundAccessTokens: true, ResourceName: r.cfg.name}
}

// MetadataHandler serves the metadata (GET and HEAD), readable by any
// client: it is what a client without credentials starts from.
func (r *Resource) MetadataHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_ = json.NewEncoder(w).Encode(r.Metadata())
	})
}

// Challenge returns the WWW-Authenticate value for a refusal: err nil
// means no token was presented (RFC 6750 section 3.1: no error code), an
// *Error names its code and description. It always carries
// resource_metadata (RFC 9728 section 5.1) and, when scopes are required,
// scope.
func (r *Resource) Challenge(err error) string {
	var b strings.Builder
	b.WriteString(`Bearer resource_metadata="`)
	b.WriteString(r.MetadataURL())
	b.WriteString(`"`)
	scope := strings.Join(r.cfg.required, " ")
	var oe *Error
	if errors.As(err, &oe) {
		if oe.Scope != "" {
			scope = oe.Scope
		}
		b.WriteString(`, error="` + oe.Code + `", error_description="` + quoteSafe(oe.Description) + `"`)
	}
	if scope != "" {
		b.WriteString(`, scope="` + quoteSafe(scope) + `"`)
	}
	return b.String()
}

// quoteSafe keeps of s what may stand in a quoted-string of an auth-param
// (RFC 6750: %x20-21 / %x23-5B / %x5D-7E).
func quoteSafe(s string) string {
	return strings.Map(func(c rune) rune {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return '\''
		}
		return c
	}, s)
}
