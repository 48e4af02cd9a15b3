package agent

import (
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/mcpca/mcpca/clock"
)

// Defaults of a Source.
const (
	DefaultRenewAt        = 2.0 / 3.0
	DefaultJitter         = 0.075
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	DefaultBundleInterval = time.Hour
)

// Option configures NewSource.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	name           string
	clock          clock.Clock
	renewAt        float64
	jitter         float64
	rand           func() float64
	minBackoff     time.Duration
	maxBackoff     time.Duration
	bundle         BundleFetcher
	bundleInterval time.Duration
	roots          []*x509.Certificate
	store          Store
	logger         *slog.Logger
	armed          func(time.Time)
}

// WithName names the source in logs, status and metrics (default: the
// certificate's subject common name).
func WithName(name string) Option { return optionFunc(func(c *config) { c.name = name }) }

// WithClock sets the clock (default clock.Real).
func WithClock(clk clock.Clock) Option { return optionFunc(func(c *config) { c.clock = clk }) }

// WithRenewAt sets the point of the lifetime at which to renew, as the
// fraction of it that has passed: 0.66 renews once 66% of the lifetime is
// gone. It must be strictly between 0 and 1; the default is 2/3.
func WithRenewAt(fraction float64) Option {
	return optionFunc(func(c *config) { c.renewAt = fraction })
}

// WithJitter sets how much earlier than the renew point a renewal may happen,
// as a fraction of the time from the certificate's start to the renew point
// (so it scales with WithRenewAt), drawn at random once per certificate so
// that many hosts do not renew at once; retries after failures are
// shortened at random by up to four times as much as a fraction of the
// lifetime (at most half), so hosts do not retry in step after a CA outage.
// It must be at least 0 and below 1; 0 disables both. The default, 0.075,
// is 5% of the lifetime at the default renew point of 2/3.
func WithJitter(fraction float64) Option {
	return optionFunc(func(c *config) { c.jitter = fraction })
}

// WithBackoff sets the first and the largest wait between failed renewal
// attempts (default 1s and 5m). The largest wait is further capped at a
// twentieth of the certificate's lifetime.
func WithBackoff(min, max time.Duration) Option {
	return optionFunc(func(c *config) { c.minBackoff, c.maxBackoff = min, max })
}

// WithBundle makes the source fetch the trust bundle from f at every renewal
// and every interval (default one hour when interval is 0), so that a root or
// intermediate rotation on the CA reaches the source.
func WithBundle(f BundleFetcher, interval time.Duration) Option {
	return optionFunc(func(c *config) { c.bundle, c.bundleInterval = f, interval })
}

// WithRoots sets the initial trust bundle (for example the root file the
// host was provisioned with).
func WithRoots(roots []*x509.Certificate) Option {
	return optionFunc(func(c *config) { c.roots = append([]*x509.Certificate(nil), roots...) })
}

// WithStore makes the source persist every new snapshot before it starts
// serving it; a failed Store counts as a failed renewal and the previous
// snapshot stays current.
func WithStore(s Store) Option { return optionFunc(func(c *config) { c.store = s }) }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return optionFunc(func(c *config) { c.logger = l }) }

// withRand replaces the jitter source (tests).
func withRand(f func() float64) Option { return optionFunc(func(c *config) { c.rand = f }) }

// WithOnSchedule calls f every time the source has armed its next renewal
// attempt, with the time of that attempt: at start and after every attempt.
// It is for logs, metrics and tests that move a fake clock; f runs on the
// renewal goroutine and must not block.
func WithOnSchedule(f func(next time.Time)) Option {
	return optionFunc(func(c *config) { c.armed = f })
}
