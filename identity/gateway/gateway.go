// Package gateway is an MCP-aware reverse proxy: it puts mcpca's
// verification, Cedar policies, list filtering and audit log in front of
// an MCP server written in any language, reached over Streamable HTTP.
//
// Every message is decided by the same code as the in-process adapter: the
// gateway authenticates each HTTP request with mcpauth.Guard.Authenticate
// (the client certificate, re-verified per request: expiry, revocation),
// reads each JSON-RPC message strictly (mcpauth.CheckMessage), decides
// requests with Guard.AuthorizeMessage (policy, audit record, sealed
// requestState) and prepares results with Guard.FilterResult (lists
// filtered, private to the caller's cache). What passes is forwarded as it
// came: the upstream's session IDs, SSE event IDs (so streams resume),
// server-to-client requests (sampling, elicitation, roots) and their
// answers, progress and cancellation all travel through unchanged, on the
// HTTP request that carried them.
//
// Sessions: the upstream creates one per client initialize, and the
// gateway binds it to the SPIFFE ID that created it (Guard's table): no
// upstream session is ever used by two identities, and another identity
// naming it is refused (403). Protocol 2026-07-28 has no sessions: every
// request is decided on its own, and its Mcp-Method and Mcp-Name headers
// must agree with the body.
//
// The upstream learns who called from the Mcpca-Caller header, a JWS the
// gateway signs with its own certificate's key (see VerifyCaller); any
// copy a client sends is dropped, as are its Authorization and Cookie
// headers and every header the protocol does not need.
//
// What cannot be passed on faithfully is refused with a JSON-RPC error that
// says why: JSON-RPC batches, ambiguous JSON, oversized bodies, an
// upstream that is down, slow or answers garbage.
package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
)

// Defaults of the options.
const (
	DefaultMaxBodyBytes          = 4 << 20
	DefaultUpstreamTimeout       = 30 * time.Second
	DefaultMaxPerIdentity        = 32
	DefaultMaxStreamsPerIdentity = 8
	DefaultCallerAssertTTL       = 10 * time.Second
	defaultMaxResponseBytes      = 16 << 20
	maxIdlePerHost               = 64               // idle upstream connections kept
	idleConnTimeout              = 90 * time.Second // and how long
)

// Gateway proxies one MCP endpoint to one upstream. Use it as the
// http.Handler of the MCP path on a TLS server whose client certificates
// the Guard's verifier checks (identity.ServerTLSConfig). It is safe for
// concurrent use.
type Gateway struct {
	guard    *mcpauth.Guard
	upstream *url.URL
	client   *http.Client
	rt       http.RoundTripper // the default client's transport (see do)
	cfg      config

	mu       sync.Mutex
	inflight map[string]int // SPIFFE ID -> requests in flight

	assert assertions
}

// Option configures New.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	client          *http.Client
	upstreamTLS     *tls.Config
	maxBody         int64
	maxResponse     int64
	upstreamTimeout time.Duration
	maxPerIdentity  int
	maxStreams      int
	signer          identity.CertificateSource
	logger          *slog.Logger
	clock           clock.Clock
	metrics         *Metrics
}

// WithUpstreamTLS sets the TLS configuration for an https upstream (for
// mTLS with the gateway's own identity: identity.ClientTLSConfig).
func WithUpstreamTLS(c *tls.Config) Option {
	return optionFunc(func(cfg *config) { cfg.upstreamTLS = c })
}

// WithHTTPClient sets the client that reaches the upstream (its timeouts
// are its own; WithUpstreamTLS and WithUpstreamTimeout are then ignored).
func WithHTTPClient(c *http.Client) Option {
	return optionFunc(func(cfg *config) { cfg.client = c })
}

// WithMaxBodyBytes bounds a client's request body (default
// DefaultMaxBodyBytes); a larger one is refused with 413.
func WithMaxBodyBytes(n int64) Option {
	return optionFunc(func(cfg *config) { cfg.maxBody = n })
}

// WithUpstreamTimeout bounds how long the upstream may take to start
// answering a request (default DefaultUpstreamTimeout); past it the caller
// gets a JSON-RPC error naming the upstream.
func WithUpstreamTimeout(d time.Duration) Option {
	return optionFunc(func(cfg *config) { cfg.upstreamTimeout = d })
}

// WithMaxPerIdentity bounds the requests one identity may have in flight
// through the gateway at once (default DefaultMaxPerIdentity); beyond it a
// request is refused with CodeBusy at once.
func WithMaxPerIdentity(n int) Option {
	return optionFunc(func(cfg *config) { cfg.maxPerIdentity = n })
}

// WithMaxStreamsPerIdentity bounds the standalone (GET) streams one
// identity may hold open at once (default DefaultMaxStreamsPerIdentity);
// beyond it a GET is answered 429.
func WithMaxStreamsPerIdentity(n int) Option {
	return optionFunc(func(cfg *config) { cfg.maxStreams = n })
}

// WithCallerAssertion has the gateway tell the upstream who called, in
// the Mcpca-Caller header of every request it forwards: a JWS signed with
// the key of src's current certificate (the gateway's own), carrying that
// certificate chain. Upstreams check it with VerifyCaller.
func WithCallerAssertion(src identity.CertificateSource) Option {
	return optionFunc(func(cfg *config) { cfg.signer = src })
}

// WithLogger sets where the gateway logs (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(cfg *config) { cfg.logger = l })
}

// WithClock sets the clock of caller assertions (default clock.Real).
func WithClock(c clock.Clock) Option {
	return optionFunc(func(cfg *config) { cfg.clock = c })
}

// WithMetrics records the gateway's decisions, upstream latency and errors
// and open sessions in m.
func WithMetrics(m *Metrics) Option {
	return optionFunc(func(cfg *config) { cfg.metrics = m })
}

// New returns a gateway that decides with guard and forwards to the MCP
// endpoint at upstream: an http:// or https:// URL, or a Stdio's URL (with
// WithHTTPClient(&http.Client{Transport: stdio})).
func New(guard *mcpauth.Guard, upstream string, opts ...Option) (_ *Gateway, err error) {
	if guard == nil {
		return nil, errorf("a Guard is required")
	}
	cfg := config{maxBody: DefaultMaxBodyBytes, maxResponse: defaultMaxResponseBytes,
		upstreamTimeout: DefaultUpstreamTimeout, maxPerIdentity: DefaultMaxPerIdentity, maxStreams: DefaultMaxStreamsPerIdentity}
	for _, o := range opts {
		o.apply(&cfg)
	}
	var u *url.URL
	if rest, ok := strings.CutPrefix(upstream, "stdio:"); ok {
		if cfg.client == nil {
			return nil, errorf("a stdio upstream needs WithHTTPClient(&http.Client{Transport: stdio})")
		}
		u = &url.URL{Scheme: "stdio", Opaque: rest}
	} else if u, err = url.Parse(upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errorf("upstream %q is not an http:// or https:// URL", upstream)
	}
	switch {
	case cfg.maxBody <= 0:
		return nil, errorf("the body limit must be positive, got %d", cfg.maxBody)
	case cfg.upstreamTimeout <= 0:
		return nil, errorf("the upstream timeout must be positive, got %v", cfg.upstreamTimeout)
	case cfg.maxPerIdentity <= 0 || cfg.maxStreams <= 0:
		return nil, errorf("the per-identity limits must be positive, got %d and %d", cfg.maxPerIdentity, cfg.maxStreams)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	cfg.clock = clock.Or(cfg.clock)
	client := cfg.client
	if client == nil {
		var rt http.RoundTripper = &http.Transport{
			TLSClientConfig:       cfg.upstreamTLS,
			ResponseHeaderTimeout: cfg.upstreamTimeout,
			MaxIdleConnsPerHost:   maxIdlePerHost,
			IdleConnTimeout:       idleConnTimeout,
			ForceAttemptHTTP2:     cfg.upstreamTLS != nil,
		}
		if u.Scheme == "http" {
			rt = &plainTransport{headerTimeout: cfg.upstreamTimeout, maxIdle: maxIdlePerHost, idleTimeout: idleConnTimeout}
		}
		client = &http.Client{
			// A redirect would carry the caller assertion elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport:     rt,
		}
	}
	gw := &Gateway{guard: guard, upstream: u, client: client, cfg: cfg, inflight: make(map[string]int)}
	if cfg.client == nil {
		// The default client refuses redirects and has no timeout nor
		// cookie jar: Client.Do adds nothing to its transport.
		gw.rt = client.Transport
	}
	return gw, nil
}

// Upstream returns the upstream's URL (without a password it may hold).
func (gw *Gateway) Upstream() string { return gw.upstream.Redacted() }

// callerKey carries the caller of a forwarded request in its context, for
// an in-process upstream (Stdio).
type callerKey struct{}

// newRequest is a request to the upstream.
func (gw *Gateway) newRequest(ctx context.Context, method string, body io.Reader) (*http.Request, error) {
	r, err := http.NewRequestWithContext(ctx, method, "http://upstream.invalid/", body)
	if err != nil {
		return nil, err
	}
	r.URL = gw.upstream
	r.Host = gw.upstream.Host
	return r, nil
}

// acquire takes one of key's slots, at most limit; false when all are
// taken.
func (gw *Gateway) acquire(key string, limit int) bool {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if gw.inflight[key] >= limit {
		return false
	}
	gw.inflight[key]++
	return true
}

func (gw *Gateway) release(id string) {
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if gw.inflight[id]--; gw.inflight[id] <= 0 {
		delete(gw.inflight, id)
	}
}
