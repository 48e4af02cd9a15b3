package identity

import (
	"log/slog"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/trust"
)

// Defaults of a Verifier.
const (
	DefaultMaxChainLength = 5
	DefaultCRLGrace       = time.Hour
	DefaultCacheSize      = 4096
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

type verifyConfig struct {
	oids         OIDs
	clock        clock.Clock
	logger       *slog.Logger
	trustDomains []string
	anyTD        bool
	maxChain     int
	crls         []trust.CRLSource
	grace        time.Duration
	stalePolicy  StaleCRLPolicy
	cacheSize    int
}

type verifyOptionFunc func(*verifyConfig)

func (f verifyOptionFunc) applyVerify(c *verifyConfig) { f(c) }

// WithClock sets the clock that decides validity, CRL freshness and refresh
// timers (default clock.Real).
func WithClock(clk clock.Clock) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.clock = clk })
}

// WithLogger sets the logger for warnings (default slog.Default()).
func WithLogger(l *slog.Logger) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.logger = l })
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
func WithCRL(src trust.CRLSource) VerifyOption {
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
