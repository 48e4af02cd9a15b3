package identity

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/mcpca/mcpca/clock"
)

// Defaults of a Verifier and of the refreshing sources.
const (
	DefaultMaxChainLength  = 5
	DefaultCRLGrace        = time.Hour
	DefaultCacheSize       = 4096
	DefaultRefreshInterval = 5 * time.Minute
)

// StaleCRLPolicy says what a Verifier does when the revocation status of a
// certificate cannot be established: no CRL was ever loaded, none covers the
// certificate's issuer, its signature does not verify, or it is older than
// its nextUpdate plus the grace period (the CA could not be reached).
type StaleCRLPolicy int

const (
	// CRLFailClosed rejects the certificate. It is the default.
	CRLFailClosed StaleCRLPolicy = iota
	// CRLFailOpen accepts the certificate unless a CRL that verifies (stale
	// or not) lists it, and logs a warning.
	CRLFailOpen
)

// String returns "fail-closed" or "fail-open".
func (p StaleCRLPolicy) String() string {
	if p == CRLFailOpen {
		return "fail-open"
	}
	return "fail-closed"
}

// VerifyOption configures NewVerifier.
type VerifyOption interface{ applyVerify(*verifyConfig) }

// SourceOption configures the refreshing sources: NewFileBundleSource,
// NewCABundleSource and NewCRLFetcher.
type SourceOption interface{ applySource(*sourceConfig) }

// Option configures both a Verifier and the refreshing sources.
type Option interface {
	VerifyOption
	SourceOption
}

type verifyConfig struct {
	oids         OIDs
	clock        clock.Clock
	logger       *slog.Logger
	trustDomains []string
	anyTD        bool
	maxChain     int
	crls         []CRLSource
	grace        time.Duration
	stalePolicy  StaleCRLPolicy
	cacheSize    int
}

type sourceConfig struct {
	clock     clock.Clock
	logger    *slog.Logger
	interval  time.Duration
	client    *http.Client
	onRefresh func(error)
	bundle    Source
}

type verifyOptionFunc func(*verifyConfig)

func (f verifyOptionFunc) applyVerify(c *verifyConfig) { f(c) }

type sourceOptionFunc func(*sourceConfig)

func (f sourceOptionFunc) applySource(c *sourceConfig) { f(c) }

type bothOption struct {
	v func(*verifyConfig)
	s func(*sourceConfig)
}

func (o bothOption) applyVerify(c *verifyConfig) { o.v(c) }
func (o bothOption) applySource(c *sourceConfig) { o.s(c) }

// WithClock sets the clock that decides validity, CRL freshness and refresh
// timers (default clock.Real).
func WithClock(clk clock.Clock) Option {
	return bothOption{
		v: func(c *verifyConfig) { c.clock = clk },
		s: func(c *sourceConfig) { c.clock = clk },
	}
}

// WithLogger sets the logger for warnings (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return bothOption{
		v: func(c *verifyConfig) { c.logger = l },
		s: func(c *sourceConfig) { c.logger = l },
	}
}

// WithTrustDomains sets the trust domains whose identities are accepted.
// A Verifier needs this option or AnyTrustDomain.
func WithTrustDomains(tds ...string) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.trustDomains = append(c.trustDomains, tds...) })
}

// AnyTrustDomain accepts identities of any trust domain the bundle's CAs
// sign for. Prefer WithTrustDomains.
func AnyTrustDomain() VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.anyTD = true })
}

// WithMaxChainLength caps the number of certificates in a chain, leaf and
// root included, both as presented and as verified (default 5).
func WithMaxChainLength(n int) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.maxChain = n })
}

// WithCRL makes the Verifier check leaves against the CRLs src supplies. It
// may be given more than once, one source per issuing CA; a leaf is checked
// against the CRL whose issuer is the leaf's issuer.
func WithCRL(src CRLSource) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.crls = append(c.crls, src) })
}

// WithCRLGrace sets how long after its nextUpdate a CRL is still used
// (default one hour).
func WithCRLGrace(d time.Duration) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.grace = d })
}

// WithStaleCRLPolicy sets what happens when revocation status is unknown
// (default CRLFailClosed).
func WithStaleCRLPolicy(p StaleCRLPolicy) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.stalePolicy = p })
}

// WithCacheSize sets how many verified chains are remembered (default 4096;
// 0 disables the cache). Entries are dropped whenever the bundle or a CRL
// changes, and a cached result is still checked against the clock.
func WithCacheSize(n int) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.cacheSize = n })
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
func WithBundle(src Source) SourceOption {
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
