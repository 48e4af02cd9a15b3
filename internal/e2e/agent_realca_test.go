package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"github.com/mcpca/mcpca/agent"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
)

// These tests run an agent.Source against the real CA (embedded step-ca on
// loopback). The source decides on a fake clock, started at the real time;
// the CA issues on the real clock, so every attempt happens when the test
// moves the fake clock and never while it waits.

// caLog collects the JSON log of a real CA, to count what it issued.
type caLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *caLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// renewals counts the renewals the CA granted.
func (l *caLog) renewals() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), `"event":"renew"`)
}

func (l *caLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *caLog) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(l, nil)) }

// realCASource enrols a one-hour server certificate at the real CA and
// returns a source renewing it there on the fake clock fk, with no jitter.
func realCASource(t *testing.T, c *catest.CA, fk *clock.Fake, armed armedRecorder, renewAt float64) (*agent.Source, tls.Certificate) {
	t.Helper()
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "api", DNSNames: []string{"localhost"}, TTL: time.Hour})
	cl := &agent.CAClient{CAURL: c.URL, TrustRoots: func() *x509.CertPool { return c.Roots }}
	s, err := agent.NewSource(cert, cl, agent.WithClock(fk), agent.WithRenewAt(renewAt), agent.WithJitter(0), agent.WithBackoff(time.Second, time.Minute),
		agent.WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	return s, cert
}

// pointOf is the renewal point of leaf at fraction, without jitter.
func pointOf(leaf *x509.Certificate, fraction float64) time.Time {
	return leaf.NotBefore.Add(time.Duration(float64(leaf.NotAfter.Sub(leaf.NotBefore)) * fraction))
}

// The real CA renews at the configured point, exactly once per attempt, and
// the source never arms an attempt that is already due (a renewal loop). The
// CA issues on the real clock with a one-second resolution: a renewal within
// the second of the enrolment ends no later than the certificate it replaces,
// and the source then backs off (1s, 2s, ...) instead of renewing at once.
func TestSourceRenewsAtTheConfiguredPointNeverInALoopAgainstTheRealCA(t *testing.T) {
	var log caLog
	c := catest.Start(t, catest.Options{Logger: log.logger()})
	fk := clock.NewFake(time.Now())
	armed := newArmed()
	const renewAt = 0.6
	s, cert := realCASource(t, c, fk, armed, renewAt)

	first := armed.next(t)
	if want := pointOf(cert.Leaf, renewAt); !first.Equal(want) {
		t.Fatalf("first attempt armed for %v, want %v (60%% of the lifetime)", first, want)
	}
	fk.Set(first.Add(-time.Second))
	armed.none(t)
	if n := log.renewals(); n != 0 {
		t.Fatalf("the CA renewed %d times before the renewal point", n)
	}

	prev := cert.Leaf
	streak := 0
	for i := 1; i <= 3; i++ {
		fk.Set(s.Status().NextAttempt)
		next := armed.next(t)
		now := fk.Now()
		if n := log.renewals(); n != i {
			t.Fatalf("attempt %d: the CA renewed %d times", i, n)
		}
		st := s.Status()
		leaf := s.Current().Leaf()
		if st.Renewals != uint64(i) || st.Failures != 0 || st.LastError != nil || leaf.SerialNumber.Cmp(prev.SerialNumber) == 0 {
			t.Fatalf("attempt %d: status %+v, serial %s", i, st, leaf.SerialNumber)
		}
		if got, _ := s.GetCertificate(nil); got.Leaf != leaf {
			t.Fatalf("attempt %d: GetCertificate serves another certificate", i)
		}
		if !next.After(now) {
			t.Fatalf("attempt %d: next attempt armed for %v, not after now %v: a renewal loop", i, next, now)
		}
		var want time.Time
		if leaf.NotAfter.After(prev.NotAfter) {
			streak = 0
			want = pointOf(leaf, renewAt)
		} else {
			streak++
			want = now.Add(time.Second << (streak - 1))
		}
		if !next.Equal(want) {
			t.Fatalf("attempt %d: next attempt armed for %v, want %v (not_after %v, previous %v)", i, next, want, leaf.NotAfter, prev.NotAfter)
		}
		armed.none(t)
		prev = leaf
	}
}

// With the CA down the source backs off (1s, then 2s), keeps serving its
// certificate and reports the error; when the CA comes back on the same
// address the next attempt renews there.
func TestSourceRidesOutARealCAOutage(t *testing.T) {
	var log caLog
	c := catest.Start(t, catest.Options{Logger: log.logger()})
	addr := strings.TrimPrefix(c.URL, "https://")
	fk := clock.NewFake(time.Now())
	armed := newArmed()
	s, cert := realCASource(t, c, fk, armed, 0.5)
	due := armed.next(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Server.Close(ctx); err != nil {
		t.Fatal(err)
	}
	down := `agent: renewing: Post "https://` + addr + `/1.0/renew": dial tcp ` + addr + `: connect: connection refused`
	at := due
	for i, wait := range []time.Duration{time.Second, 2 * time.Second} {
		fk.Set(at)
		next := armed.next(t)
		st := s.Status()
		if st.ConsecutiveFailures != i+1 || st.Failures != uint64(i+1) || st.Renewals != 0 || st.LastError == nil || st.LastError.Error() != down {
			t.Fatalf("failure %d: status %+v\nwant error %s", i+1, st, down)
		}
		if want := at.Add(wait); !next.Equal(want) {
			t.Fatalf("failure %d: retry armed for %v, want %v (backoff %v)", i+1, next, want, wait)
		}
		if got, _ := s.GetCertificate(nil); got.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) != 0 {
			t.Fatalf("failure %d: the source stopped serving its certificate", i+1)
		}
		if ok, why := st.Healthy(fk.Now(), 5); !ok {
			t.Fatalf("failure %d: unhealthy while the certificate is valid: %s", i+1, why)
		}
		at = next
	}

	// The CA comes back on the same address, with the same store.
	srv, err := ca.Open(c.Dir, c.Password, ca.WithLogger(log.logger()))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the CA's address was taken while it was down: %v", err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(context.Background()) })

	fk.Set(at)
	next := armed.next(t)
	st := s.Status()
	if st.Renewals != 1 || st.ConsecutiveFailures != 0 || st.LastError != nil || st.Failures != 2 {
		t.Fatalf("after the CA returned: status %+v", st)
	}
	if n := log.renewals(); n != 1 {
		t.Fatalf("the CA renewed %d times", n)
	}
	leaf := s.Current().Leaf()
	if leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) == 0 {
		t.Fatal("the certificate was not renewed")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.Roots, Intermediates: intermediatesOf(s.Current().Certificate)}); err != nil {
		t.Fatalf("the renewed certificate: %v", err)
	}
	if !next.After(fk.Now()) {
		t.Fatalf("next attempt armed for %v, not after now %v", next, fk.Now())
	}
	armed.none(t)
}

func intermediatesOf(c tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		if x, err := x509.ParseCertificate(der); err == nil {
			p.AddCert(x)
		}
	}
	return p
}

// The CA never comes back: the source keeps trying (never in a loop),
// keeps serving its certificate until it expires and then says so, in its
// log and its health, while peers refuse the expired certificate.
func TestSourceCertificateExpiresWhileTheRealCAIsGone(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	addr := strings.TrimPrefix(c.URL, "https://")
	fk := clock.NewFake(time.Now())
	armed := newArmed()
	var logs caLog
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "api", DNSNames: []string{"localhost"}, TTL: time.Hour})
	cl := &agent.CAClient{CAURL: c.URL, TrustRoots: func() *x509.CertPool { return c.Roots }}
	s, err := agent.NewSource(cert, cl, agent.WithClock(fk), agent.WithJitter(0), agent.WithBackoff(time.Second, time.Minute), agent.WithLogger(logs.logger()), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	armed.next(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Server.Close(ctx); err != nil {
		t.Fatal(err)
	}
	expiry := cert.Leaf.NotAfter
	fk.Set(expiry.Add(time.Second))
	next := armed.next(t)
	if !next.After(fk.Now()) {
		t.Fatalf("next attempt armed for %v, not after now %v: a retry loop", next, fk.Now())
	}
	st := s.Status()
	down := `dial tcp ` + addr + `: connect: connection refused`
	if st.Renewals != 0 || st.ConsecutiveFailures != 1 || st.LastError == nil || !strings.Contains(st.LastError.Error(), down) {
		t.Fatalf("status after the failed attempt past expiry: %+v", st)
	}
	wantWhy := "certificate expired at " + expiry.UTC().Format(time.RFC3339)
	if ok, why := st.Healthy(fk.Now(), 5); ok || why != wantWhy {
		t.Fatalf("Healthy = %v %q, want false %q", ok, why, wantWhy)
	}
	if !strings.Contains(logs.String(), `"msg":"agent: renewal failed and the certificate has expired"`) {
		t.Fatalf("log lacks the expiry:\n%s", logs.String())
	}
	if got, _ := s.GetCertificate(nil); got.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) != 0 {
		t.Fatal("the source replaced its certificate without a renewal")
	}
	// A peer checking at the same (fake) time refuses the certificate as
	// expired.
	_, err = cert.Leaf.Verify(x509.VerifyOptions{Roots: c.Roots, Intermediates: intermediatesOf(cert), CurrentTime: fk.Now()})
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a peer's check of the expired certificate: %v", err)
	}
	// Later attempts keep backing off.
	fk.Set(next)
	if again := armed.next(t); !again.After(next) {
		t.Fatalf("retry armed for %v after %v", again, next)
	}
	if st := s.Status(); st.ConsecutiveFailures != 2 {
		t.Fatalf("second failure not counted: %+v", st)
	}
}

// agent.CAClient decides expiry on its Clock: a certificate expired by that
// clock is not presented to the CA (which decides on its own, real clock)
// and the error says to enrol again.
func TestCAClientRefusesACertificateExpiredOnItsClock(t *testing.T) {
	var log caLog
	c := catest.Start(t, catest.Options{Logger: log.logger()})
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "api", DNSNames: []string{"localhost"}, TTL: time.Hour})
	fk := clock.NewFake(cert.Leaf.NotAfter.Add(time.Second))
	cl := &agent.CAClient{CAURL: c.URL, TrustRoots: func() *x509.CertPool { return c.Roots }, Clock: fk}
	_, err := cl.Renew(context.Background(), cert)
	want := "the certificate expired at " + cert.Leaf.NotAfter.UTC().Format(time.RFC3339) + " and can no longer renew: enrol again with a new token"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Renew of a certificate expired on the client's clock: %v, want %q", err, want)
	}
	if n := log.renewals(); n != 0 {
		t.Fatalf("the CA renewed %d times", n)
	}
	// Before expiry on that clock, the CA renews it.
	fk = clock.NewFake(cert.Leaf.NotAfter.Add(-time.Minute))
	cl.Clock = fk
	if _, err := cl.Renew(context.Background(), cert); err != nil {
		t.Fatal(err)
	}
	if n := log.renewals(); n != 1 {
		t.Fatalf("the CA renewed %d times, want 1", n)
	}
}
