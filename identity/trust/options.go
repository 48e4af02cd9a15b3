package trust

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/mcpca/mcpca/clock"
)

// DefaultRefreshInterval is how often the refreshing sources refresh
// unless WithRefreshInterval says otherwise.
const DefaultRefreshInterval = 5 * time.Minute

// SourceOption configures the refreshing sources: NewFileBundleSource,
// NewCABundleSource, NewCRLFetcher, NewFileCertificateSource and
// CAHTTPClient.
type SourceOption interface{ applySource(*sourceConfig) }

type sourceConfig struct {
	clock     clock.Clock
	logger    *slog.Logger
	interval  time.Duration
	client    *http.Client
	onRefresh func(error)
	bundle    BundleSource
}

type sourceOptionFunc func(*sourceConfig)

func (f sourceOptionFunc) applySource(c *sourceConfig) { f(c) }

// WithClock sets the clock of refresh timers and of the CA server check
// (default clock.Real).
func WithClock(clk clock.Clock) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.clock = clk })
}

// WithLogger sets the logger for failed refreshes (default slog.Default()).
func WithLogger(l *slog.Logger) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.logger = l })
}

// WithRefreshInterval sets how often a source refreshes (default 5 minutes).
func WithRefreshInterval(d time.Duration) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.interval = d })
}

// WithHTTPClient sets the HTTP client a source fetches with. The default
// for NewCABundleSource and for https CRL URLs is CAHTTPClient of the
// source's bundle when one is known, otherwise http.DefaultClient.
func WithHTTPClient(hc *http.Client) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.client = hc })
}

// WithOnRefresh registers f to be called after every refresh attempt with
// its result (nil on success), for logs, metrics and tests.
func WithOnRefresh(f func(error)) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.onRefresh = f })
}

// WithBundle gives a CRLFetcher the trust bundle: a fetched CRL whose issuer
// is one of the bundle's CAs (root or intermediate) must verify with it, or
// it is refused and the previous CRL kept. CRLs of other issuers (typically
// an intermediate the bundle does not list) are checked by the Verifier
// against each chain's issuing CA.
func WithBundle(src BundleSource) SourceOption {
	return sourceOptionFunc(func(c *sourceConfig) { c.bundle = src })
}

func newSourceConfig(opts []SourceOption) sourceConfig {
	cfg := sourceConfig{interval: DefaultRefreshInterval}
	for _, o := range opts {
		o.applySource(&cfg)
	}
	cfg.clock = clock.Or(cfg.clock)
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.interval <= 0 {
		cfg.interval = DefaultRefreshInterval
	}
	return cfg
}
