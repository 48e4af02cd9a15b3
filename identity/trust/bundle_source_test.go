package trust_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

var discard = slog.New(slog.DiscardHandler)

// waitArmed blocks until the fake clock has a pending timer.
func waitArmed(clk *clock.Fake) {
	for {
		ch := clk.Changed()
		if clk.Pending() > 0 {
			return
		}
		<-ch
	}
}

func TestParseBundlePEMErrors(t *testing.T) {
	ca := testca.NewCA(t, td)
	leaf := ca.CreateSVID(alice)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "trust: bundle has no PEM certificates"},
		{"key block", testca.KeyPEM(t, leaf.Key), `trust: bundle: PEM block 1 is "PRIVATE KEY", want CERTIFICATE`},
		{"garbage certificate", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "trust: bundle: PEM block 1: x509: malformed certificate"},
		{"leaf in bundle", append(ca.RootsPEM(), testca.CertsPEM(leaf.Leaf)...), "trust: bundle: spiffe://example.org/client/alice is not a CA certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := trust.ParseBundlePEM(tc.in)
			assertErr(t, err, tc.want, nil)
		})
	}
	_, err := trust.NewBundle(nil)
	assertErr(t, err, "trust: bundle has no root certificates", nil)
	_, err = trust.LoadBundleFile(filepath.Join(t.TempDir(), "none.pem"))
	if err == nil || !strings.HasPrefix(err.Error(), "trust: bundle: open ") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestFileBundleSource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "roots.pem")
	a, b := testca.NewCA(t, td), testca.NewCA(t, td)
	write := func(data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(a.RootsPEM())
	clk := clock.NewFake(time.Now())
	refreshed := make(chan error, 1)
	src, err := trust.NewFileBundleSource(path, trust.WithClock(clk), trust.WithRefreshInterval(time.Minute),
		trust.WithOnRefresh(func(err error) { refreshed <- err }), trust.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := src.Bundle()
	if len(first.Roots()) != 1 || !first.Roots()[0].Equal(a.Root()) {
		t.Fatalf("roots %v", first.Roots())
	}
	// Unchanged content keeps the same bundle (and so the verifier's cache).
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if again, _ := src.Bundle(); again != first {
		t.Fatal("reloading an unchanged file made a new bundle")
	}
	// A broken file keeps the previous bundle.
	write([]byte("not PEM"))
	assertErr(t, src.Reload(), "trust: "+path+": bundle has no PEM certificates", nil)
	if again, _ := src.Bundle(); again != first {
		t.Fatal("a broken file replaced the bundle")
	}

	// Run picks up a rotation at the next interval.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	if err := <-refreshed; err == nil {
		t.Fatal("first refresh of the broken file succeeded")
	}
	write(append(a.RootsPEM(), b.RootsPEM()...))
	waitArmed(clk)
	clk.Advance(time.Minute)
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	now, _ := src.Bundle()
	if len(now.Roots()) != 2 || now.Generation() <= first.Generation() {
		t.Fatalf("after rotation: %d roots, generation %d", len(now.Roots()), now.Generation())
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run returned %v", err)
	}
	_, err = trust.NewFileBundleSource(filepath.Join(dir, "missing.pem"))
	if err == nil || !strings.HasPrefix(err.Error(), "trust: bundle: open ") {
		t.Fatalf("missing file: %v", err)
	}
}

// caServer is a TLS server on loopback serving /roots and /crl like the CA.
type caServer struct {
	*httptest.Server
	mu    sync.Mutex
	roots []*x509.Certificate
	crl   []byte
	code  int
}

func newCAServer(t *testing.T, ca *testca.CA, certOpts ...testca.SVIDOption) *caServer {
	t.Helper()
	s := &caServer{roots: []*x509.Certificate{ca.Root()}, code: http.StatusOK}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.code != http.StatusOK {
			w.WriteHeader(s.code)
			return
		}
		switch r.URL.Path {
		case "/roots":
			var resp struct {
				Crts []string `json:"crts"`
			}
			for _, c := range s.roots {
				resp.Crts = append(resp.Crts, string(testca.CertsPEM(c)))
			}
			_ = json.NewEncoder(w).Encode(resp)
		case "/crl":
			_, _ = w.Write(s.crl)
		default:
			http.NotFound(w, r)
		}
	}))
	if certOpts == nil {
		certOpts = []testca.SVIDOption{testca.WithIPAddresses(net.IPv4(127, 0, 0, 1))}
	}
	tlsCert := ca.CreateSVID("spiffe://example.org/server/ca", certOpts...).TLS
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{tlsCert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.Server = srv
	return s
}

func (s *caServer) set(f func(s *caServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func TestCABundleSource(t *testing.T) {
	a, b := testca.NewCA(t, td), testca.NewCA(t, td)
	srv := newCAServer(t, a)
	src, err := trust.NewCABundleSource(srv.URL+"/", bundleOf(t, a))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, _ := src.Bundle()
	if err := src.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if again, _ := src.Bundle(); again != first {
		t.Fatal("the same roots made a new bundle")
	}
	srv.set(func(s *caServer) { s.roots = append(s.roots, b.Root()) })
	if err := src.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if now, _ := src.Bundle(); len(now.Roots()) != 2 {
		t.Fatalf("roots after rotation: %d", len(now.Roots()))
	}
	srv.set(func(s *caServer) { s.code = http.StatusServiceUnavailable })
	assertErr(t, src.Refresh(ctx), "trust: bundle: GET "+srv.URL+"/roots: 503 Service Unavailable", nil)
	if now, _ := src.Bundle(); len(now.Roots()) != 2 {
		t.Fatal("a failed refresh changed the bundle")
	}

	// A CA whose TLS certificate does not chain to the bundle is refused.
	other := newCAServer(t, testca.NewCA(t, td))
	src2, err := trust.NewCABundleSource(other.URL, bundleOf(t, a))
	if err != nil {
		t.Fatal(err)
	}
	err = src2.Refresh(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "trust: bundle: Get ") || !strings.Contains(err.Error(), ": CA server certificate: x509: certificate signed by unknown authority") {
		t.Fatalf("untrusted CA server: %v", err)
	}
	// The host name is checked.
	wrongHost := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	src3, _ := trust.NewCABundleSource(wrongHost, bundleOf(t, a))
	err = src3.Refresh(ctx)
	if err == nil || !strings.HasSuffix(err.Error(), ": CA server certificate: x509: certificate is not valid for any names, but wanted to match localhost") {
		t.Fatalf("wrong host: %v", err)
	}
	// So is an IP address.
	byName := newCAServer(t, a, testca.WithDNSNames("ca.example.org"))
	src4, _ := trust.NewCABundleSource(byName.URL, bundleOf(t, a))
	err = src4.Refresh(ctx)
	if err == nil || !strings.HasSuffix(err.Error(), ": CA server certificate: x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs") {
		t.Fatalf("IP not in certificate: %v", err)
	}
	_, err = trust.NewCABundleSource(srv.URL, nil)
	assertErr(t, err, "trust: CA bundle source for "+srv.URL+" needs an initial bundle or an HTTP client", nil)
}

func TestRootsSource(t *testing.T) {
	a, b := testca.NewCA(t, td), testca.NewCA(t, td)
	p := &rootsProvider{roots: []*x509.Certificate{a.Root()}}
	src := trust.RootsSource(p)
	b1, err := src.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	if b2, _ := src.Bundle(); b2 != b1 {
		t.Fatal("same roots slice made a new bundle")
	}
	p.roots = []*x509.Certificate{a.Root(), b.Root()}
	if b3, _ := src.Bundle(); b3 == b1 || len(b3.Roots()) != 2 {
		t.Fatal("new roots slice did not make a new bundle")
	}
}

type rootsProvider struct{ roots []*x509.Certificate }

func (p *rootsProvider) Roots() []*x509.Certificate { return p.roots }
