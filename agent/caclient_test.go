package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/agenttest"
	"github.com/mcpca/mcpca/internal/caclient"
)

func TestCAClient(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	srv := agenttest.NewCAServer(t, ca, func() time.Time { return now }, time.Hour)
	trust := func() *x509.CertPool { return ca.Pool() }
	cl := &CAClient{CAURL: srv.URL, TrustRoots: trust}
	ctx := context.Background()

	cert, err := cl.Enroll(ctx, srv.Mint("web", "spiffe://example.test/server/web", "127.0.0.1", "localhost"))
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf.URIs[0].String() != "spiffe://example.test/server/web" {
		t.Fatalf("enrolled %v", cert.Leaf.URIs)
	}
	renewed, err := cl.Renew(ctx, cert)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) == 0 || renewed.PrivateKey != cert.PrivateKey {
		t.Fatal("renew: same serial or a new key")
	}
	rekeyed, err := (&CAClient{CAURL: srv.URL, TrustRoots: trust, Rekey: true}).Renew(ctx, renewed)
	if err != nil {
		t.Fatal(err)
	}
	if rekeyed.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(renewed.Leaf.PublicKey) || srv.Rekeys.Load() != 1 {
		t.Fatal("not re-keyed")
	}
	if _, err := prepareCertificate(rekeyed); err != nil {
		t.Fatal(err)
	}
	roots, err := cl.Roots(ctx)
	if err != nil || len(roots) != 1 || !roots[0].Equal(ca.Roots()[0]) {
		t.Fatalf("roots: %v", err)
	}
}

func TestCAClientErrors(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	srv := agenttest.NewCAServer(t, ca, func() time.Time { return now }, time.Hour)
	trust := func() *x509.CertPool { return ca.Pool() }
	ctx := context.Background()
	cert := ca.Cert("web", now.Add(-time.Minute), now.Add(time.Hour))
	good := &CAClient{CAURL: srv.URL, TrustRoots: trust}

	check := func(name string, err error, want string) {
		t.Helper()
		if err == nil || err.Error() != want {
			t.Errorf("%s: err = %v\nwant  %s", name, err, want)
		}
	}
	_, err := (&CAClient{CAURL: "http://ca:9000", TrustRoots: trust}).Renew(ctx, cert)
	check("http", err, `agent: CA URL "http://ca:9000" must start with https://`)
	_, err = (&CAClient{CAURL: srv.URL}).Roots(ctx)
	check("no trust", err, "agent: no root certificates to trust the CA with")
	_, err = good.Enroll(ctx, "not-a-token")
	check("not a token", err, "agent: enrolling: the token is not a JWT (want three dot-separated parts)")
	_, err = good.Enroll(ctx, "a.eyJzdWIiOiJ3ZWIiLCJzYW5zIjpbIndlYiJdfQ.c")
	check("unknown token", err, "agent: enrolling: the CA answered 401: token already used or unknown")
	other := newTestCA(t).Cert("web", now.Add(-time.Minute), now.Add(time.Hour))
	_, err = good.Renew(ctx, other)
	if err == nil || err.Error()[:len("agent: renewing: the CA answered 401: client certificate: x509: certificate signed by unknown authority")] != "agent: renewing: the CA answered 401: client certificate: x509: certificate signed by unknown authority" {
		t.Errorf("foreign certificate: %v", err)
	}
	srv.Down.Store(true)
	_, err = good.Renew(ctx, cert)
	check("down renew", err, "agent: renewing: the CA answered 503: the CA is down")
	_, err = (&CAClient{CAURL: srv.URL, TrustRoots: trust, Rekey: true}).Renew(ctx, cert)
	check("down rekey", err, "agent: re-keying: the CA answered 503: the CA is down")
	_, err = good.Roots(ctx)
	check("down roots", err, "agent: fetching the trust bundle: the CA answered 503: the CA is down")
	// The CA's answer stays reachable for callers that branch on it.
	var apiErr *caclient.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 503 || apiErr.Message != "the CA is down" {
		t.Errorf("errors.As(*caclient.APIError) on %v: %+v", err, apiErr)
	}
	_, err = pairChain(nil, cert.PrivateKey)
	check("empty answer", err, "agent: the CA returned no certificate")
}

func TestSourceRejectsABrokenRenewal(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	armed := newArmed()
	initial := ca.Cert("web", t0, t0.Add(time.Hour))
	other := ca.Cert("web", t0, t0.Add(2*time.Hour))
	answers := []tls.Certificate{{}, {Certificate: other.Certificate, PrivateKey: initial.PrivateKey}}
	r := RenewerFunc(func(context.Context, tls.Certificate) (tls.Certificate, error) {
		a := answers[0]
		answers = answers[1:]
		return a, nil
	})
	s, err := NewSource(initial, r, WithClock(fk), WithRenewAt(0.5), WithJitter(0), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, s)
	armed.next(t)
	fk.Advance(30 * time.Minute)
	armed.next(t)
	if st := s.Status(); st.LastError == nil || st.LastError.Error() != "agent: empty certificate chain" {
		t.Fatalf("empty answer: %v", st.LastError)
	}
	fk.Set(s.Status().NextAttempt)
	armed.next(t)
	if st := s.Status(); st.LastError == nil || st.LastError.Error() != "agent: certificate and private key do not match" || st.Renewals != 0 {
		t.Fatalf("mismatched answer: %+v", st)
	}
	if s.Current().Leaf().SerialNumber.Cmp(initial.Leaf.SerialNumber) != 0 {
		t.Fatal("a broken renewal replaced the certificate")
	}
}
