package apikey

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/mcpca/mcpca/clock"
)

// DefaultRefreshInterval is how often a Verifier fetches the key set.
const DefaultRefreshInterval = 15 * time.Second

// Default failure budget per source: DefaultFailureBurst failed attempts at
// once, then DefaultFailureRate a second.
const (
	DefaultFailureBurst = 10
	DefaultFailureRate  = 1.0
)

// Option configures New.
type Option interface{ apply(*config) }

type config struct {
	clock     clock.Clock
	logger    *slog.Logger
	audiences []string
	interval  time.Duration
	client    *http.Client
	onRefresh func(error)
	failRate  float64
	failBurst int
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithAudience names the resources (their URLs, e.g.
// https://mcp.example.com/mcp) this server is: a key for any other
// audience is refused. Required.
func WithAudience(urls ...string) Option {
	return optionFunc(func(c *config) { c.audiences = append(c.audiences, urls...) })
}

// WithClock sets the clock of expiry, freshness, rate limits and the
// refresh timer (default clock.Real).
func WithClock(clk clock.Clock) Option { return optionFunc(func(c *config) { c.clock = clk }) }

// WithLogger sets the logger of refused attempts and failed refreshes
// (default slog.Default()). A key is never logged.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(c *config) { c.logger = l }) }

// WithRefreshInterval sets how often Run fetches the key set (default
// DefaultRefreshInterval). A revocation reaches the verifier within it.
func WithRefreshInterval(d time.Duration) Option {
	return optionFunc(func(c *config) { c.interval = d })
}

// WithHTTPClient sets the client that fetches the key set and the JWKS
// (default: TLS 1.3 trusting the roots given to New, no proxy). To follow
// a root rotation, pass trust.CAHTTPClient of a refreshing bundle source.
func WithHTTPClient(hc *http.Client) Option { return optionFunc(func(c *config) { c.client = hc }) }

// WithOnRefresh registers f, called after every refresh with its result
// (nil on success), for logs, metrics and tests.
func WithOnRefresh(f func(error)) Option { return optionFunc(func(c *config) { c.onRefresh = f }) }

// WithFailureLimit sets the failed attempts a source may make: burst at
// once, then perSecond a second. Past it, the source's attempts are refused
// (ErrRateLimited) without being looked at, good keys included.
func WithFailureLimit(perSecond float64, burst int) Option {
	return optionFunc(func(c *config) { c.failRate, c.failBurst = perSecond, burst })
}
