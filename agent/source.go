package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/trust"
)

// A Source plugs into the identity package: identity.ServerTLSConfig and
// ClientTLSConfig take it as the certificate source, and
// trust.RootsSource(src) makes its bundle the verifier's trust bundle.
var (
	_ identity.CertificateSource = (*Source)(nil)
	_ trust.RootsProvider        = (*Source)(nil)
)

// Renewer obtains a new certificate to replace current. Renewing keeps the
// key; re-keying returns a new one. Client implements it over step-ca's API.
type Renewer interface {
	Renew(ctx context.Context, current tls.Certificate) (tls.Certificate, error)
}

// RenewerFunc adapts a function to Renewer.
type RenewerFunc func(ctx context.Context, current tls.Certificate) (tls.Certificate, error)

// Renew calls f.
func (f RenewerFunc) Renew(ctx context.Context, current tls.Certificate) (tls.Certificate, error) {
	return f(ctx, current)
}

// BundleFetcher fetches the CA's current trust bundle. Client implements it.
type BundleFetcher interface {
	Roots(ctx context.Context) ([]*x509.Certificate, error)
}

// Store persists a snapshot before a Source serves it. FileSink implements it.
type Store interface {
	Store(ctx context.Context, s *Snapshot) error
}

// Status is what a Source reports about itself, for health checks, metrics
// and logs.
type Status struct {
	Name      string
	Serial    string // hex serial of the current leaf
	NotBefore time.Time
	NotAfter  time.Time
	// NextAttempt is when the source will next try to renew.
	NextAttempt time.Time
	// LastRenewal is when the current certificate was obtained (zero if it
	// came from NewSource).
	LastRenewal time.Time
	Renewals    uint64 // successful renewals
	Failures    uint64 // failed renewal attempts
	// ConsecutiveFailures counts the failed attempts since the last
	// success.
	ConsecutiveFailures int
	// LastError is the error of the last failed attempt, nil after a
	// success.
	LastError error
	// HookFailures counts failed reload hook runs (set by the Daemon).
	HookFailures uint64
}

// Healthy reports whether the source's certificate is fit to serve at now,
// with threshold consecutive failures tolerated (0: any number), and if not,
// why.
func (st Status) Healthy(now time.Time, threshold int) (bool, string) {
	return healthy(st.NotAfter, now, st.ConsecutiveFailures, threshold)
}

// Source is a live certificate source: it holds the current Snapshot and,
// while Run is going, renews it before it expires. Its methods are safe for
// concurrent use; the TLS callbacks cost one atomic load.
type Source struct {
	cfg     config
	renewer Renewer
	cur     atomic.Pointer[Snapshot]
	trigger chan struct{}
	running atomic.Bool

	mu     sync.Mutex
	st     Status
	streak int           // attempts since due that did not move due into the future
	busy   time.Duration // the Retry-After of the last failure (a CA shedding load), 0 if none
	u      float64       // jitter sample of the current leaf
	subs   map[int]func(*Snapshot)
	nextID int

	// unstored is a renewal the store failed to keep; only the Run loop
	// touches it. The next attempt stores it again instead of renewing
	// again: the CA lets a superseded certificate renew only for a short
	// grace (ca.RenewalGrace), so renewing the old one once more could be
	// refused for good.
	unstored *Snapshot
}

// NewSource returns a source serving initial, renewed through r once Run is
// called. The initial certificate may already be expired: the source still
// starts, reports it and keeps trying.
func NewSource(initial tls.Certificate, r Renewer, opts ...Option) (*Source, error) {
	cfg := config{
		renewAt:        DefaultRenewAt,
		jitter:         DefaultJitter,
		minBackoff:     DefaultMinBackoff,
		maxBackoff:     DefaultMaxBackoff,
		bundleInterval: DefaultBundleInterval,
	}
	for _, o := range opts {
		o.apply(&cfg)
	}
	cfg.clock = clock.Or(cfg.clock)
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.rand == nil {
		cfg.rand = rand.Float64
	}
	if cfg.bundleInterval <= 0 {
		cfg.bundleInterval = DefaultBundleInterval
	}
	if !(cfg.renewAt > 0 && cfg.renewAt < 1) {
		return nil, errorf("renew point %v is not between 0 and 1", cfg.renewAt)
	}
	if !(cfg.jitter >= 0 && cfg.jitter < 1) {
		return nil, errorf("jitter %v is not at least 0 and below 1 (it is a fraction of the time to the renew point)", cfg.jitter)
	}
	if cfg.minBackoff <= 0 || cfg.maxBackoff < cfg.minBackoff {
		return nil, errorf("backoff %v..%v: the first wait must be positive and not above the largest", cfg.minBackoff, cfg.maxBackoff)
	}
	if r == nil {
		return nil, errorf("no renewer")
	}
	cert, err := prepareCertificate(initial)
	if err != nil {
		return nil, err
	}
	if cfg.name == "" {
		cfg.name = cert.Leaf.Subject.CommonName
	}
	cfg.logger = cfg.logger.With("identity", cfg.name)
	s := &Source{cfg: cfg, renewer: r, trigger: make(chan struct{}, 1), subs: map[int]func(*Snapshot){}}
	s.publish(newSnapshot(cert, cfg.roots))
	s.u = cfg.rand()
	s.st.Name = cfg.name
	return s, nil
}

// Name returns the name the source reports under.
func (s *Source) Name() string { return s.cfg.name }

// Current returns the current snapshot.
func (s *Source) Current() *Snapshot { return s.cur.Load() }

// GetCertificate serves the current certificate; use it as
// tls.Config.GetCertificate. After an expiry it keeps serving the last
// certificate (peers then refuse it with a clear "expired" error, and
// Status and the health endpoint say so).
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &s.cur.Load().Certificate, nil
}

// GetClientCertificate presents the current certificate; use it as
// tls.Config.GetClientCertificate.
func (s *Source) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return &s.cur.Load().Certificate, nil
}

// Roots returns the current trust bundle. The slice must not be modified;
// it is the same slice until the bundle changes.
func (s *Source) Roots() []*x509.Certificate { return s.cur.Load().Roots }

// RootPool returns the current trust bundle as a pool, for
// tls.Config.RootCAs / ClientCAs or a verifier. It must not be modified.
func (s *Source) RootPool() *x509.CertPool { return s.cur.Load().pool }

// Status returns a copy of the source's status.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Subscribe calls fn with every new snapshot (a renewal or a changed trust
// bundle), from the renewal goroutine, after the snapshot became current. fn
// must not block for long. The returned function unsubscribes.
func (s *Source) Subscribe(fn func(*Snapshot)) (cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextID
	s.nextID++
	s.subs[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, id)
	}
}

// RenewNow asks the running source to attempt a renewal at once (for
// example on SIGHUP). It does not wait.
func (s *Source) RenewNow() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// Run renews the certificate until ctx is done, then returns nil. It fetches
// the trust bundle first when the source has a BundleFetcher. A source runs
// at most once at a time.
func (s *Source) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errorf("source %q is already running", s.cfg.name)
	}
	defer s.running.Store(false)
	if s.cfg.bundle == nil {
		return s.loop(ctx, nil, nil)
	}
	s.refreshBundle(ctx)
	bt := s.cfg.clock.NewTimer(s.cfg.bundleInterval)
	defer bt.Stop()
	return s.loop(ctx, bt.C(), bt)
}

func (s *Source) loop(ctx context.Context, bundleC <-chan time.Time, bt clock.Timer) error {
	timer := s.cfg.clock.NewTimer(s.delay())
	defer timer.Stop()
	s.armed()
	next := s.Status().NextAttempt
	s.cfg.logger.Info("agent: next renewal", "at", next, "in", next.Sub(s.cfg.clock.Now()).Round(time.Second).String(),
		"not_after", s.cur.Load().Certificate.Leaf.NotAfter)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-bundleC:
			s.refreshBundle(ctx)
			bt.Reset(s.cfg.bundleInterval)
			continue
		case <-timer.C():
		case <-s.trigger:
			timer.Stop()
		}
		s.attempt(ctx)
		if ctx.Err() != nil {
			return nil
		}
		timer.Reset(s.delay())
		s.armed()
	}
}

// armed reports the arming of the renewal timer to tests.
func (s *Source) armed() {
	if s.cfg.armed != nil {
		s.cfg.armed(s.Status().NextAttempt)
	}
}

// delay returns how long to wait before the next attempt, and records when.
func (s *Source) delay() time.Duration {
	now := s.cfg.clock.Now()
	leaf := s.cur.Load().Certificate.Leaf
	s.mu.Lock()
	defer s.mu.Unlock()
	at := s.cfg.schedule().next(leaf.NotBefore, leaf.NotAfter, now, s.u, s.streak, s.busy, s.cfg.rand)
	s.st.NextAttempt = at
	return at.Sub(now)
}

// attempt renews once.
func (s *Source) attempt(ctx context.Context) {
	old := s.cur.Load()
	snap := s.unstored
	if snap == nil || !s.cfg.clock.Now().Before(snap.NotAfter()) {
		s.unstored = nil
		cert, err := s.renewer.Renew(ctx, old.Certificate)
		if ctx.Err() != nil {
			return // stopping: not a failure
		}
		if err == nil {
			cert, err = prepareCertificate(cert)
		}
		if err != nil {
			s.fail(err)
			return
		}
		roots := old.Roots
		if s.cfg.bundle != nil {
			if r, err := s.cfg.bundle.Roots(ctx); err != nil {
				s.cfg.logger.Warn("agent: trust bundle refresh failed; keeping the current one", "error", err.Error())
			} else if len(r) > 0 && !sameRoots(r, roots) {
				roots = r // a new slice only when the bundle changed
			}
		}
		snap = newSnapshot(cert, roots)
	}
	if s.cfg.store != nil {
		if err := s.cfg.store.Store(ctx, snap); err != nil {
			s.unstored = snap // stored again next time, not renewed again
			s.fail(errorf("storing the renewed certificate: %w", err))
			return
		}
	}
	s.unstored = nil
	cert := snap.Certificate
	s.publish(snap)

	now := s.cfg.clock.Now()
	leaf := cert.Leaf
	u := s.cfg.rand()
	due := s.cfg.schedule().due(leaf.NotBefore, leaf.NotAfter, u)
	s.mu.Lock()
	s.u = u
	s.st.Renewals++
	s.st.LastRenewal = now
	s.busy = 0
	s.st.ConsecutiveFailures = 0
	s.st.LastError = nil
	if progressed(old.Certificate.Leaf, leaf, due, now) {
		s.streak = 0
	} else {
		// The CA returned a certificate that does not last longer than
		// the old one or is already due (a lifetime capped by an
		// expiring intermediate, a clock far off): back off instead of
		// renewing in a loop.
		s.streak++
	}
	streak := s.streak
	s.mu.Unlock()
	if streak > 0 {
		s.cfg.logger.Warn("agent: the renewed certificate does not last longer than the old one or is already due; backing off",
			"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter, "renew_at", due)
	} else {
		s.cfg.logger.Info("agent: certificate renewed",
			"serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter, "renew_at", due)
	}
	s.notify(snap)
}

func (s *Source) fail(err error) {
	now := s.cfg.clock.Now()
	leaf := s.cur.Load().Certificate.Leaf
	var apiErr *APIError
	busy := time.Duration(0)
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusServiceUnavailable {
		busy = apiErr.RetryAfter
	}
	s.mu.Lock()
	s.streak++
	s.busy = busy
	s.st.Failures++
	s.st.ConsecutiveFailures++
	s.st.LastError = err
	n := s.st.ConsecutiveFailures
	s.mu.Unlock()
	attrs := []any{"error", err.Error(), "consecutive_failures", n, "not_after", leaf.NotAfter}
	if !now.Before(leaf.NotAfter) {
		s.cfg.logger.Error("agent: renewal failed and the certificate has expired", attrs...)
		return
	}
	s.cfg.logger.Warn("agent: renewal failed; still serving the current certificate", attrs...)
}

// refreshBundle fetches the trust bundle and publishes it if it changed.
func (s *Source) refreshBundle(ctx context.Context) {
	roots, err := s.cfg.bundle.Roots(ctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		s.cfg.logger.Warn("agent: trust bundle refresh failed; keeping the current one", "error", err.Error())
		return
	}
	old := s.cur.Load()
	if len(roots) == 0 || sameRoots(roots, old.Roots) {
		return
	}
	snap := newSnapshot(old.Certificate, roots)
	if s.cfg.store != nil {
		if err := s.cfg.store.Store(ctx, snap); err != nil {
			s.cfg.logger.Warn("agent: storing the new trust bundle failed", "error", err.Error())
			return
		}
	}
	s.publish(snap)
	s.cfg.logger.Info("agent: trust bundle updated", "roots", len(roots))
	s.notify(snap)
}

func (s *Source) publish(snap *Snapshot) {
	s.cur.Store(snap)
	leaf := snap.Certificate.Leaf
	s.mu.Lock()
	s.st.Serial = leaf.SerialNumber.Text(16)
	s.st.NotBefore = leaf.NotBefore
	s.st.NotAfter = leaf.NotAfter
	s.mu.Unlock()
}

func (s *Source) notify(snap *Snapshot) {
	s.mu.Lock()
	fns := make([]func(*Snapshot), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(snap)
	}
}
