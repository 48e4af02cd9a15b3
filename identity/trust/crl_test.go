package trust_test

import (
	"context"
	"crypto/x509"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

func TestParseCRL(t *testing.T) {
	ca := testca.NewCA(t, td, testca.WithTime(t0))
	der := ca.CreateCRL(testca.Revoked(big.NewInt(7), big.NewInt(9)), testca.CRLNumber(3))
	for _, in := range [][]byte{der, testca.CRLPEM(der)} {
		c, err := trust.ParseCRL(in)
		if err != nil {
			t.Fatal(err)
		}
		if c.Len() != 2 || c.Number().Int64() != 3 || !c.NextUpdate().Equal(t0.Add(time.Hour)) || !c.ThisUpdate().Equal(t0.Add(-time.Minute)) {
			t.Fatalf("parsed %d entries, number %v, %v..%v", c.Len(), c.Number(), c.ThisUpdate(), c.NextUpdate())
		}
		if at, ok := c.Revoked(big.NewInt(9)); !ok || !at.Equal(t0.Add(-time.Minute)) {
			t.Fatal("serial 9 not revoked")
		}
		if _, ok := c.Revoked(big.NewInt(8)); ok {
			t.Fatal("serial 8 revoked")
		}
		if err := c.CheckSignatureFrom(ca.Cert); err != nil {
			t.Fatal(err)
		}
		if c.Stale(t0.Add(time.Hour), 0) || !c.Stale(t0.Add(time.Hour+time.Second), 0) || c.Stale(t0.Add(2*time.Hour), time.Hour) {
			t.Fatal("Stale")
		}
	}
	_, err := trust.ParseCRL([]byte("junk"))
	if err == nil || !strings.HasPrefix(err.Error(), "trust: CRL: x509: ") {
		t.Fatalf("junk CRL: %v", err)
	}
	_, err = trust.ParseCRL(ca.RootsPEM())
	assertErr(t, err, `trust: CRL: PEM block is "CERTIFICATE", want X509 CRL`, nil)
	_, err = trust.NewStaticCRL(nil).CRL()
	assertErr(t, err, "trust: no CRL loaded", nil)
}

func TestCRLFetcherURL(t *testing.T) {
	ca := testca.NewCA(t, td, testca.WithTime(t0))
	srv := newCAServer(t, ca)
	srv.set(func(s *caServer) { s.crl = ca.CreateCRL(testca.CRLNumber(2)) })
	clk := clock.NewFake(t0)
	refreshed := make(chan error, 1)
	f, err := trust.NewCRLFetcher(srv.URL+"/crl", trust.WithHTTPClient(trust.CAHTTPClient(trust.NewBundleStore(bundleOf(t, ca)), trust.WithClock(clk))),
		trust.WithClock(clk), trust.WithRefreshInterval(time.Minute), trust.WithLogger(discard),
		trust.WithOnRefresh(func(err error) { refreshed <- err }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.CRL()
	assertErr(t, err, "trust: no CRL loaded from "+srv.URL+"/crl yet", nil)
	ctx := context.Background()
	if err := f.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := f.CRL()
	if err := f.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := f.CRL(); again != first {
		t.Fatal("refetching the same CRL made a new one")
	}
	// An older CRL number is a replay: refused, the current CRL stays.
	srv.set(func(s *caServer) { s.crl = ca.CreateCRL(testca.CRLNumber(1)) })
	assertErr(t, f.Refresh(ctx), "trust: CRL from "+srv.URL+"/crl: number 1 is older than the current 2", nil)
	srv.set(func(s *caServer) { s.crl = []byte("junk") })
	err = f.Refresh(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "trust: CRL from "+srv.URL+"/crl: CRL: x509: ") {
		t.Fatalf("junk: %v", err)
	}
	srv.set(func(s *caServer) { s.code = http.StatusNotFound })
	assertErr(t, f.Refresh(ctx), "trust: CRL from "+srv.URL+"/crl: GET "+srv.URL+"/crl: 404 Not Found", nil)
	assertErr(t, f.LastError(), "trust: CRL from "+srv.URL+"/crl: GET "+srv.URL+"/crl: 404 Not Found", nil)
	if again, _ := f.CRL(); again != first {
		t.Fatal("failed refreshes replaced the CRL")
	}

	// Run: a revocation published by the CA reaches the verifier at the
	// next interval.
	leaf := ca.CreateSVID(alice)
	v, err := identity.NewVerifier(trust.NewBundleStore(bundleOf(t, ca)), identity.WithTrustDomains(td), identity.WithClock(clk), identity.WithCRL(f))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(leaf.Chain, identity.KindClient); err != nil {
		t.Fatal(err)
	}
	srv.set(func(s *caServer) {
		s.code = http.StatusOK
		s.crl = ca.CreateCRL(testca.CRLNumber(3), testca.RevokedCerts(leaf.Leaf))
	})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = f.Run(runCtx) }()
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(leaf.Chain, identity.KindClient)
	if err == nil || !strings.Contains(err.Error(), "is revoked since") {
		t.Fatalf("revocation not applied: %v", err)
	}
	srv.set(func(s *caServer) { s.crl = ca.CreateCRL(testca.CRLNumber(4)) })
	waitArmed(clk)
	clk.Advance(time.Minute)
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	if c, _ := f.CRL(); c.Number().Int64() != 4 {
		t.Fatalf("CRL number %v after the interval", c.Number())
	}
}

func TestCRLFetcherFile(t *testing.T) {
	ca := testca.NewCA(t, td, testca.WithTime(t0))
	path := filepath.Join(t.TempDir(), "ca.crl")
	f, err := trust.NewCRLFetcher(path)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Refresh(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "trust: CRL from "+path+": open ") {
		t.Fatalf("missing file: %v", err)
	}
	_, err = f.CRL()
	if err == nil || !strings.HasPrefix(err.Error(), "trust: no CRL loaded from "+path+": open "+path+": ") {
		t.Fatalf("CRL(): %v", err)
	}
	if err := os.WriteFile(path, testca.CRLPEM(ca.CreateCRL()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c, err := f.CRL(); err != nil || c.Len() != 0 {
		t.Fatalf("%v %v", c, err)
	}
	_, err = trust.NewCRLFetcher("")
	assertErr(t, err, "trust: CRL location is empty: give a URL or a file path", nil)
}

func TestCRLFetcherChecksBundleIssuer(t *testing.T) {
	ca := testca.NewCA(t, td, testca.WithTime(t0))
	impostor := testca.NewCA(t, td, testca.WithTime(t0)) // same names, other keys
	b, err := trust.NewBundle([]*x509.Certificate{ca.Root()}, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.crl")
	f, err := trust.NewCRLFetcher(path, trust.WithBundle(trust.NewBundleStore(b)))
	if err != nil {
		t.Fatal(err)
	}
	write := func(der []byte) {
		if err := os.WriteFile(path, der, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	write(ca.CreateCRL())
	if err := f.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	good, _ := f.CRL()
	write(impostor.CreateCRL(testca.CRLNumber(5)))
	assertErr(t, f.Refresh(ctx), `trust: CRL from `+path+`: CRL signature does not verify with issuer certificate "example.org Test Intermediate CA": x509: ECDSA verification failure`, nil)
	if c, _ := f.CRL(); c != good {
		t.Fatal("a wrongly signed CRL replaced the good one")
	}
	// A CRL from an issuer outside the bundle is left to the Verifier.
	write(testca.NewCA(t, "other.org").CreateCRL(testca.CRLNumber(6)))
	if err := f.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
}
