package store

import (
	"time"

	"github.com/mcpca/mcpca/clock"
)

type config struct {
	clock     clock.Clock
	timeout   time.Duration
	retention time.Duration // 0: keep certificates forever
}

// Option configures Open.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithClock sets the clock that decides when records are pruned (default
// the system clock).
func WithClock(c clock.Clock) Option {
	return optionFunc(func(cfg *config) { cfg.clock = clock.Or(c) })
}

// WithOpenTimeout bounds the wait for another process's lock on the file
// (default DefaultOpenTimeout).
func WithOpenTimeout(d time.Duration) Option {
	return optionFunc(func(cfg *config) { cfg.timeout = d })
}

// WithCertificateRetention prunes a certificate (its DER, its provisioner
// record and its revocation record) d after it expires. Without it
// certificates are kept forever, as step-ca keeps them. An expired
// certificate can neither be used nor renewed, and step-ca drops it from
// the CRL, so a retention of a few days loses nothing a relying party reads.
func WithCertificateRetention(d time.Duration) Option {
	return optionFunc(func(cfg *config) { cfg.retention = d })
}
