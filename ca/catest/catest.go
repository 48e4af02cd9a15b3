// Package catest starts a real mcpca CA (embedded step-ca, its store in a
// temporary directory, TLS on a loopback port) inside a test, and mints
// tokens and certificates from it. Tests of other packages (agent, the MCP
// adapter, the CLI) use it to work against the real thing.
package catest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/caclient"
)

// CA is a running test CA.
type CA struct {
	Dir      string
	URL      string
	Password []byte
	Server   *ca.Server
	Roots    *x509.CertPool
	Root     *x509.Certificate
	Client   *caclient.Client
	tb       testing.TB
}

// Options tune Start.
type Options struct {
	TrustDomain string        // default "acme.test"
	MaxTTL      time.Duration // default 24h
	Logger      *slog.Logger  // default discards
	CAOptions   []ca.Option   // passed to ca.Open after the logger
}

// Start creates and serves a CA for the duration of the test.
func Start(tb testing.TB, o Options) *CA {
	tb.Helper()
	if o.TrustDomain == "" {
		o.TrustDomain = "acme.test"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	dir := filepath.Join(tb.TempDir(), "pki")
	pw := []byte("test-password")
	if _, err := ca.Init(ca.InitConfig{
		Dir: dir, Name: "Test MCP CA", TrustDomain: o.TrustDomain,
		Address: ln.Addr().String(), DNSNames: []string{"localhost"},
		Password: pw, MaxTTL: o.MaxTTL,
	}); err != nil {
		ln.Close()
		tb.Fatal(err)
	}
	srv, err := ca.Open(dir, pw, append([]ca.Option{ca.WithLogger(o.Logger)}, o.CAOptions...)...)
	if err != nil {
		ln.Close()
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("CA server: %v", err)
		}
	})
	roots := x509.NewCertPool()
	rs := srv.Authority().GetRootCertificates()
	for _, r := range rs {
		roots.AddCert(r)
	}
	url := "https://" + ln.Addr().String()
	cl, err := caclient.New(url, roots)
	if err != nil {
		tb.Fatal(err)
	}
	c := &CA{Dir: dir, URL: url, Password: pw, Server: srv, Roots: roots, Root: rs[0], Client: cl, tb: tb}
	// Wait until the CA answers.
	if _, err := cl.Roots(context.Background()); err != nil {
		tb.Fatalf("CA not ready: %v", err)
	}
	return c
}

// Token mints an enrolment token with the admin provisioner unless req says otherwise.
func (c *CA) Token(req ca.TokenRequest, opts ...ca.MintOption) string {
	c.tb.Helper()
	tok, err := ca.MintToken(c.Dir, c.Password, req, opts...)
	if err != nil {
		c.tb.Fatal(err)
	}
	return tok
}

// Enroll mints a token for req, generates a P-256 key and redeems the token.
// It returns the TLS certificate (leaf + intermediate, key, Leaf set).
func (c *CA) Enroll(req ca.TokenRequest) tls.Certificate {
	c.tb.Helper()
	cert, err := c.EnrollToken(c.Token(req))
	if err != nil {
		c.tb.Fatal(err)
	}
	return cert
}

// EnrollToken redeems a token with a fresh P-256 key.
func (c *CA) EnrollToken(token string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	csr, err := CSRForToken(token, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	chain, err := c.Client.Sign(context.Background(), csr, token)
	if err != nil {
		return tls.Certificate{}, err
	}
	return TLSCertificate(chain, key), nil
}

// CSRForToken builds the CSR a token asks for: its SANs, signed by key.
func CSRForToken(token string, key crypto.Signer) (*x509.CertificateRequest, error) {
	return caclient.CSRForToken(token, key)
}

// TLSCertificate pairs a chain with its key.
func TLSCertificate(chain []*x509.Certificate, key crypto.PrivateKey) tls.Certificate {
	out := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out
}

// Identity parses the identity of a certificate issued by this CA.
func (c *CA) Identity(cert tls.Certificate) *identity.Identity {
	c.tb.Helper()
	id, err := identity.FromCertificate(cert.Leaf)
	if err != nil {
		c.tb.Fatal(err)
	}
	return id
}
