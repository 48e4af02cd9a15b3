package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/agenttest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// runSource starts s.Run and stops it when the test ends.
func runSource(t *testing.T, s *Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// countingRenewer counts calls and can be switched down.
type countingRenewer = agenttest.CountingRenewer

func TestSourceRenewsAtConfiguredPointAndNeverLoops(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	r := &countingRenewer{Next: renewerOf(ca, fk.Now, time.Hour)}
	armed := newArmed()
	s, err := NewSource(ca.Cert("web", t0, t0.Add(time.Hour)), r,
		WithClock(fk), WithRenewAt(0.5), WithJitter(0), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	var notified atomic.Int64
	s.Subscribe(func(*Snapshot) { notified.Add(1) })
	runSource(t, s)

	if at := armed.next(t); !at.Equal(t0.Add(30 * time.Minute)) {
		t.Fatalf("first renewal armed for %v, want 30m in", at)
	}
	fk.Advance(30*time.Minute - time.Second)
	armed.none(t)
	if r.Calls.Load() != 0 {
		t.Fatal("renewed before the renew point")
	}
	for i := 1; i <= 5; i++ {
		fk.Advance(time.Second) // reach the renew point
		at := armed.next(t)
		now := fk.Now()
		if want := now.Add(30 * time.Minute); !at.Equal(want) {
			t.Fatalf("renewal %d: next armed for %v, want %v", i, at, want)
		}
		if got := r.Calls.Load(); got != int64(i) {
			t.Fatalf("renewal %d: %d calls to the CA", i, got)
		}
		st := s.Status()
		if st.Renewals != uint64(i) || st.Failures != 0 || !st.NotAfter.Equal(now.Add(time.Hour)) {
			t.Fatalf("renewal %d: status %+v", i, st)
		}
		if got := s.Current().NotAfter(); !got.Equal(now.Add(time.Hour)) {
			t.Fatalf("serving a certificate expiring %v", got)
		}
		fk.Advance(30*time.Minute - time.Second)
		armed.none(t)
	}
	if got := notified.Load(); got != 5 {
		t.Fatalf("subscribers notified %d times, want 5", got)
	}
}

func TestSourceRenewalThatDoesNotMoveForwardBacksOff(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	initial := ca.Cert("web", t0, t0.Add(time.Hour))
	// A CA that caps the lifetime (say, at an expiring intermediate)
	// returns certificates ending when the current one ends.
	r := &countingRenewer{Next: RenewerFunc(func(_ context.Context, cur tls.Certificate) (tls.Certificate, error) {
		return tlsCert(ca.Issue("web", cur.Leaf.PublicKey, fk.Now(), t0.Add(time.Hour)), cur.PrivateKey.(crypto.Signer)), nil
	})}
	armed := newArmed()
	s, err := NewSource(initial, r, WithClock(fk), WithRenewAt(0.5), WithJitter(0),
		WithBackoff(time.Second, time.Minute), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	armed.next(t)
	fk.Advance(30 * time.Minute)
	last := fk.Now()
	for fk.Now().Before(t0.Add(time.Hour)) {
		at := armed.next(t)
		if !at.After(last) {
			t.Fatalf("attempt %d armed for %v, not after the previous attempt at %v", r.Calls.Load(), at, last)
		}
		last = at
		armed.none(t)
		fk.Set(at)
	}
	// Without the guard, every renewal would be due at once; with it the
	// attempts spread out: 15m, 7.5m, 3.75m, ... then an exponential backoff.
	if n := r.Calls.Load(); n > 20 {
		t.Fatalf("%d renewals in the last half hour of the certificate", n)
	}
	t.Logf("%d renewals", r.Calls.Load())
}

func TestSourceRestartDoesNotRenewEarly(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0.Add(10 * time.Minute))
	r := &countingRenewer{Next: renewerOf(ca, fk.Now, time.Hour)}
	cert := ca.Cert("web", t0, t0.Add(time.Hour))
	for run := 0; run < 3; run++ {
		armed := newArmed()
		s, err := NewSource(cert, r, WithClock(fk), WithRenewAt(0.5), WithJitter(0), WithLogger(quiet), armed.option())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		if at := armed.next(t); !at.Equal(t0.Add(30 * time.Minute)) {
			t.Fatalf("run %d: armed for %v", run, at)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if r.Calls.Load() != 0 {
			t.Fatalf("run %d: renewed on start", run)
		}
	}
}

func TestSourceCADownBacksOffStillServingThenRecovers(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	r := &countingRenewer{Next: renewerOf(ca, fk.Now, time.Hour)}
	r.Down.Store(true)
	armed := newArmed()
	initial := ca.Cert("web", t0, t0.Add(time.Hour))
	s, err := NewSource(initial, r, WithClock(fk), WithRenewAt(0.5), WithJitter(0),
		WithBackoff(time.Second, 10*time.Minute), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	armed.next(t)
	fk.Advance(30 * time.Minute)
	// Capped at a twentieth of the hour: 3m.
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
		32 * time.Second, 64 * time.Second, 128 * time.Second, 3 * time.Minute, 3 * time.Minute}
	for i, d := range want {
		at := armed.next(t)
		if got := at.Sub(fk.Now()); got != d {
			t.Fatalf("failure %d: retry in %v, want %v", i+1, got, d)
		}
		c, err := s.GetCertificate(nil)
		if err != nil || c.Leaf.SerialNumber.Cmp(initial.Leaf.SerialNumber) != 0 {
			t.Fatalf("failure %d: not serving the current certificate: %v", i+1, err)
		}
		st := s.Status()
		if st.ConsecutiveFailures != i+1 || st.LastError == nil || st.LastError.Error() != "agent: renew: connection refused" {
			t.Fatalf("failure %d: status %+v", i+1, st)
		}
		if ok, _ := st.Healthy(fk.Now(), 0); !ok {
			t.Fatal("unhealthy before expiry with no threshold")
		}
		fk.Advance(d)
	}
	r.Down.Store(false)
	// The advance above fired the 11th attempt, which succeeded.
	at := armed.next(t)
	st := s.Status()
	if st.Renewals != 1 || st.ConsecutiveFailures != 0 || st.LastError != nil || st.Failures != 10 {
		t.Fatalf("after recovery: %+v", st)
	}
	if !at.Equal(fk.Now().Add(30 * time.Minute)) {
		t.Fatalf("after recovery next renewal at %v", at)
	}
	if s.Current().Leaf().SerialNumber.Cmp(initial.Leaf.SerialNumber) == 0 {
		t.Fatal("still serving the old certificate")
	}
}

func TestSourceCANeverReturnsCertificateExpires(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	r := &countingRenewer{Next: renewerOf(ca, fk.Now, time.Hour)}
	r.Down.Store(true)
	armed := newArmed()
	s, err := NewSource(ca.Cert("web", t0, t0.Add(time.Hour)), r, WithClock(fk), WithRenewAt(0.5),
		WithJitter(0), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	armed.next(t)
	for fk.Now().Before(t0.Add(time.Hour)) {
		fk.Set(s.Status().NextAttempt)
		armed.next(t)
	}
	st := s.Status()
	ok, reason := st.Healthy(fk.Now(), 0)
	if ok || reason != "certificate expired at 2026-03-01T13:00:00Z" {
		t.Fatalf("Healthy = %v %q", ok, reason)
	}
	// It keeps trying, at the capped backoff, never in a loop.
	if got := st.NextAttempt.Sub(fk.Now()); got != 3*time.Minute {
		t.Fatalf("after expiry next attempt in %v", got)
	}
}

func TestSourceStoreFailureKeepsServingTheOld(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	var failing atomic.Bool
	failing.Store(true)
	store := storeFunc(func(context.Context, *Snapshot) error {
		if failing.Load() {
			return errors.New("disk full")
		}
		return nil
	})
	armed := newArmed()
	initial := ca.Cert("web", t0, t0.Add(time.Hour))
	s, err := NewSource(initial, renewerOf(ca, fk.Now, time.Hour), WithClock(fk), WithRenewAt(0.5),
		WithJitter(0), WithStore(store), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	armed.next(t)
	fk.Advance(30 * time.Minute)
	armed.next(t)
	st := s.Status()
	if st.LastError == nil || st.LastError.Error() != "agent: storing the renewed certificate: disk full" {
		t.Fatalf("LastError = %v", st.LastError)
	}
	if s.Current().Leaf().SerialNumber.Cmp(initial.Leaf.SerialNumber) != 0 {
		t.Fatal("serving a certificate that was not stored")
	}
	failing.Store(false)
	fk.Advance(time.Second)
	armed.next(t)
	if st := s.Status(); st.Renewals != 1 || st.LastError != nil {
		t.Fatalf("after store recovered: %+v", st)
	}
}

type storeFunc func(context.Context, *Snapshot) error

func (f storeFunc) Store(ctx context.Context, s *Snapshot) error { return f(ctx, s) }

type fetcherFunc func(context.Context) ([]*x509.Certificate, error)

func (f fetcherFunc) Roots(ctx context.Context) ([]*x509.Certificate, error) { return f(ctx) }

func TestSourceRootRotationReachesBundle(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	var mu sync.Mutex
	served := ca.Roots()
	fetch := fetcherFunc(func(context.Context) ([]*x509.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		return served, nil
	})
	oldRoot := ca.Roots()[0]
	updates := make(chan *Snapshot, 10)
	s, err := NewSource(ca.Cert("web", t0, t0.Add(24*time.Hour)), renewerOf(ca, fk.Now, time.Hour),
		WithClock(fk), WithRoots(ca.Roots()), WithBundle(fetch, 10*time.Minute), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	s.Subscribe(func(sn *Snapshot) { updates <- sn })
	changed := fk.Changed()
	runSource(t, s)
	<-changed // bundle timer armed
	// The CA rotates: it serves old and new roots during the overlap.
	ca.Rotate()
	mu.Lock()
	served = []*x509.Certificate{oldRoot, ca.Roots()[0]}
	mu.Unlock()
	fk.Advance(10 * time.Minute)
	sn := <-updates
	if len(sn.Roots) != 2 || len(s.Roots()) != 2 || !s.Roots()[1].Equal(ca.Roots()[0]) {
		t.Fatalf("bundle after rotation has %d roots", len(s.Roots()))
	}
	leaf := ca.Cert("new", t0, t0.Add(time.Hour)).Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.RootPool(), Intermediates: poolOf([]*x509.Certificate{ca.Intermediate()}), CurrentTime: t0}); err != nil {
		t.Fatalf("a leaf of the new root does not verify against the bundle: %v", err)
	}
}

func TestNewSourceErrors(t *testing.T) {
	ca := newTestCA(t)
	good := ca.Cert("web", t0, t0.Add(time.Hour))
	other := ca.Cert("other", t0, t0.Add(time.Hour))
	mismatched := good
	mismatched.PrivateKey = other.PrivateKey
	noLeaf := tls.Certificate{Certificate: [][]byte{[]byte("junk")}, PrivateKey: good.PrivateKey}
	r := renewerOf(ca, time.Now, time.Hour)
	tests := []struct {
		name string
		cert tls.Certificate
		r    Renewer
		opts []Option
		want string
	}{
		{"renew point 1", good, r, []Option{WithRenewAt(1)}, "agent: renew point 1 is not between 0 and 1"},
		{"renew point 0", good, r, []Option{WithRenewAt(0)}, "agent: renew point 0 is not between 0 and 1"},
		{"jitter too big", good, r, []Option{WithRenewAt(0.5), WithJitter(1)}, "agent: jitter 1 is not at least 0 and below 1 (it is a fraction of the time to the renew point)"},
		{"jitter negative", good, r, []Option{WithJitter(-0.1)}, "agent: jitter -0.1 is not at least 0 and below 1 (it is a fraction of the time to the renew point)"},
		{"bad backoff", good, r, []Option{WithBackoff(time.Minute, time.Second)}, "agent: backoff 1m0s..1s: the first wait must be positive and not above the largest"},
		{"no renewer", good, nil, nil, "agent: no renewer"},
		{"empty chain", tls.Certificate{}, r, nil, "agent: empty certificate chain"},
		{"junk", noLeaf, r, nil, "agent: parsing certificate: x509: malformed certificate"},
		{"no key", tls.Certificate{Certificate: good.Certificate}, r, nil, "agent: private key is missing or cannot sign"},
		{"mismatched key", mismatched, r, nil, "agent: certificate and private key do not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rr Renewer
			if tt.r != nil {
				rr = tt.r
			}
			_, err := NewSource(tt.cert, rr, tt.opts...)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSourceRunTwice(t *testing.T) {
	ca := newTestCA(t)
	armed := newArmed()
	s, err := NewSource(ca.Cert("web", time.Now().Add(-time.Minute), time.Now().Add(time.Hour)), renewerOf(ca, time.Now, time.Hour),
		WithName("web"), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	armed.next(t)
	if err := s.Run(context.Background()); err == nil || err.Error() != `agent: source "web" is already running` {
		t.Fatalf("second Run: %v", err)
	}
}

func poolOf(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestSourceJitterSpreadsRenewalAndRetries(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	r := &countingRenewer{Next: renewerOf(ca, fk.Now, time.Hour)}
	r.Down.Store(true)
	armed := newArmed()
	s, err := NewSource(ca.Cert("web", t0, t0.Add(100*time.Minute)), r, WithClock(fk), WithRenewAt(0.5),
		WithJitter(0.1), withRand(func() float64 { return 0.5 }), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	// Renew point 50% of 100m, brought forward by 0.1*0.5 of the 50m to it.
	if at := armed.next(t); !at.Equal(t0.Add(47*time.Minute + 30*time.Second)) {
		t.Fatalf("renewal armed for %v", at.Sub(t0))
	}
	fk.Advance(47*time.Minute + 30*time.Second)
	// Retry after 1s, shortened by min(4*0.1*0.5, 0.5)*0.5 = 10%.
	if at := armed.next(t); at.Sub(fk.Now()) != 900*time.Millisecond {
		t.Fatalf("retry in %v", at.Sub(fk.Now()))
	}
}

// A FileSink that cannot write makes the renewal fail with one "agent: "
// prefix, however many functions of the package added context, and the
// error chain still reaches the cause.
func TestSourceReportsAFailedFileSinkWithOnePrefix(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	dir := t.TempDir()
	sink := sinkIn(dir)
	if err := os.WriteFile(filepath.Join(dir, "b"), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	armed := newArmed()
	s, err := NewSource(ca.Cert("web", t0, t0.Add(time.Hour)), renewerOf(ca, fk.Now, time.Hour), WithClock(fk), WithRenewAt(0.5),
		WithJitter(0), WithRoots(ca.Roots()), WithStore(sink), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	armed.next(t)
	fk.Advance(30 * time.Minute)
	armed.next(t)
	err = s.Status().LastError
	if want := "agent: storing the renewed certificate: writing " + sink.BundleFile + ": not a directory"; err == nil || err.Error() != want {
		t.Fatalf("LastError = %v\nwant        %s", err, want)
	}
	if !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("errors.Is(ENOTDIR) fails on %v", err)
	}
}

// The jitter scales with the renew point: an early renew point (0.01) with
// the default jitter is valid and renews early, never before the start.
func TestSourceJitterScalesWithAnEarlyRenewPoint(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	armed := newArmed()
	s, err := NewSource(ca.Cert("web", t0, t0.Add(100*time.Minute)), renewerOf(ca, fk.Now, time.Hour), WithClock(fk), WithRenewAt(0.01),
		withRand(func() float64 { return 0.999 }), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	// 1% of 100m is 60s; the default jitter brings it forward by at most
	// 7.5% of those.
	if at := armed.next(t); at.Before(t0.Add(55*time.Second)) || at.After(t0.Add(time.Minute)) {
		t.Fatalf("renewal armed for %v, want between 55s and 60s", at.Sub(t0))
	}
}

// A renewal the store could not keep is stored again at the next attempt,
// not renewed again: the CA lets a superseded certificate renew only for a
// short grace, so renewing the old one once more could be refused for good.
func TestSourceStoresAFailedRenewalAgainInsteadOfRenewingAgain(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	dir := t.TempDir()
	sink := sinkIn(dir)
	blocker := filepath.Join(dir, "b")
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &countingRenewer{Next: renewerOf(ca, fk.Now, time.Hour)}
	armed := newArmed()
	s, err := NewSource(ca.Cert("web", t0, t0.Add(time.Hour)), r, WithClock(fk), WithRenewAt(0.5),
		WithJitter(0), WithRoots(ca.Roots()), WithStore(sink), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	armed.next(t)
	fk.Advance(30 * time.Minute)
	retry := armed.next(t)
	if n := r.Calls.Load(); n != 1 || s.Status().LastError == nil {
		t.Fatalf("after the failed store: %d renewals, last error %v", n, s.Status().LastError)
	}
	// The disk is fixed; the retry stores the renewal it has.
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	fk.Set(retry)
	armed.next(t)
	if n := r.Calls.Load(); n != 1 {
		t.Fatalf("the CA was asked %d times, want once: the retry renewed again instead of storing", n)
	}
	onDisk, err := LoadKeyPair(sink.CertFile, sink.KeyFile)
	if err != nil || !onDisk.Leaf.Equal(s.Current().Leaf()) || s.Status().LastError != nil {
		t.Fatalf("on disk %v, serving %v, last error %v", onDisk.Leaf, s.Current().Leaf(), err)
	}
}

// A CA shedding load (503 with Retry-After) is not asked again before the
// wait it named, and the retries of a fleet are spread over as long again;
// the current certificate stays in use meanwhile.
func TestSourceHonoursRetryAfterWithJitter(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	var calls atomic.Int64
	next := renewerOf(ca, fk.Now, time.Hour)
	r := RenewerFunc(func(ctx context.Context, cur tls.Certificate) (tls.Certificate, error) {
		if calls.Add(1) == 1 {
			return tls.Certificate{}, &APIError{Status: http.StatusServiceUnavailable, Message: "ca: the CA is at its limit", RetryAfter: 20 * time.Second}
		}
		return next(ctx, cur)
	})
	armed := newArmed()
	first := ca.Cert("web", t0, t0.Add(time.Hour))
	s, err := NewSource(first, r, WithClock(fk), WithRenewAt(0.5), WithJitter(0),
		withRand(func() float64 { return 0.5 }), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	armed.next(t)
	fk.Advance(30 * time.Minute)
	// 20 s, plus half of 20 s of spread.
	if at := armed.next(t); at.Sub(fk.Now()) != 30*time.Second {
		t.Fatalf("after a 503 with Retry-After 20s: retry in %v, want 30s", at.Sub(fk.Now()))
	}
	if got := s.Current().Leaf().SerialNumber; got.Cmp(first.Leaf.SerialNumber) != 0 {
		t.Fatal("the current certificate was dropped while the CA sheds load")
	}
	fk.Advance(30 * time.Second)
	armed.next(t)
	if calls.Load() != 2 || s.Status().Renewals != 1 {
		t.Fatalf("%d calls, %d renewals after the wait; want 2, 1", calls.Load(), s.Status().Renewals)
	}
}
