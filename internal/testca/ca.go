// Package testca is an in-memory certificate authority for tests across
// mcpca: a root and an intermediate (ECDSA P-256) that issue X509-SVIDs in the
// shape of the identity contract, with mutators to build every kind of bad
// certificate, child CAs, and CRLs.
//
// It is for tests only: every failure calls tb.Fatal.
package testca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"time"
)

// CA is one level of a test PKI: it holds the certificate and key that sign
// what it issues, and the chain above it up to the root.
type CA struct {
	tb  testing.TB
	td  string
	now time.Time

	// Cert is this CA's certificate; Key its private key.
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey

	// parents are the CA certificates above Cert, nearest first, root last.
	// Empty for a root.
	parents []*x509.Certificate
}

// Option configures NewCA and ChildCA.
type Option interface{ apply(*caConfig) }

type caConfig struct {
	now      time.Time
	validity time.Duration
	mutate   []func(*x509.Certificate)
}

type optionFunc func(*caConfig)

func (f optionFunc) apply(c *caConfig) { f(c) }

// WithTime sets the time the CA treats as now: CA certificates and default
// leaf validity windows are computed from it. The default is time.Now().
func WithTime(now time.Time) Option {
	return optionFunc(func(c *caConfig) { c.now = now })
}

// WithCAValidity sets the lifetime of the CA certificates created (default
// ten years, backdated one hour).
func WithCAValidity(d time.Duration) Option {
	return optionFunc(func(c *caConfig) { c.validity = d })
}

// WithCATemplate mutates the CA certificate template before signing.
func WithCATemplate(f func(*x509.Certificate)) Option {
	return optionFunc(func(c *caConfig) { c.mutate = append(c.mutate, f) })
}

func newConfig(opts []Option) caConfig {
	cfg := caConfig{now: time.Now(), validity: 10 * 365 * 24 * time.Hour}
	for _, o := range opts {
		o.apply(&cfg)
	}
	return cfg
}

// NewCA returns a two-level test PKI for trustDomain: a self-signed root and
// an intermediate under it. The returned CA is the intermediate, which signs
// leaves and CRLs; Root returns the root certificate.
func NewCA(tb testing.TB, trustDomain string, opts ...Option) *CA {
	tb.Helper()
	cfg := newConfig(opts)
	root := &CA{tb: tb, td: trustDomain, now: cfg.now}
	root.Key = newKey(tb)
	tmpl := caTemplate(tb, cfg, trustDomain+" Test Root CA", trustDomain)
	root.Cert = createCert(tb, tmpl, tmpl, &root.Key.PublicKey, root.Key)
	return root.ChildCA(opts...)
}

// NewRoot returns a single self-signed root CA that issues directly.
func NewRoot(tb testing.TB, trustDomain string, opts ...Option) *CA {
	tb.Helper()
	cfg := newConfig(opts)
	root := &CA{tb: tb, td: trustDomain, now: cfg.now}
	root.Key = newKey(tb)
	tmpl := caTemplate(tb, cfg, trustDomain+" Test Root CA", trustDomain)
	root.Cert = createCert(tb, tmpl, tmpl, &root.Key.PublicKey, root.Key)
	return root
}

// ChildCA returns a new intermediate CA signed by ca.
func (ca *CA) ChildCA(opts ...Option) *CA {
	ca.tb.Helper()
	cfg := newConfig(append([]Option{WithTime(ca.now)}, opts...))
	child := &CA{tb: ca.tb, td: ca.td, now: cfg.now}
	child.Key = newKey(ca.tb)
	name := ca.td + " Test Intermediate CA"
	if len(ca.parents) > 0 {
		name += fmt.Sprintf(" %d", len(ca.parents)+1)
	}
	tmpl := caTemplate(ca.tb, cfg, name, ca.td)
	child.Cert = createCert(ca.tb, tmpl, ca.Cert, &child.Key.PublicKey, ca.Key)
	child.parents = append([]*x509.Certificate{ca.Cert}, ca.parents...)
	return child
}

func caTemplate(tb testing.TB, cfg caConfig, cn, td string) *x509.Certificate {
	t := &x509.Certificate{
		SerialNumber:          newSerial(tb),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{td}},
		NotBefore:             cfg.now.Add(-time.Hour),
		NotAfter:              cfg.now.Add(cfg.validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	for _, m := range cfg.mutate {
		m(t)
	}
	return t
}

// TrustDomain returns the trust domain the CA was created for.
func (ca *CA) TrustDomain() string { return ca.td }

// Now returns the time the CA treats as now.
func (ca *CA) Now() time.Time { return ca.now }

// Root returns the root certificate of the PKI.
func (ca *CA) Root() *x509.Certificate {
	if len(ca.parents) == 0 {
		return ca.Cert
	}
	return ca.parents[len(ca.parents)-1]
}

// Intermediates returns the CA certificates from ca up to, but excluding, the
// root, nearest first: what a leaf presents after itself.
func (ca *CA) Intermediates() []*x509.Certificate {
	if len(ca.parents) == 0 {
		return nil
	}
	out := []*x509.Certificate{ca.Cert}
	return append(out, ca.parents[:len(ca.parents)-1]...)
}

// Roots returns a pool holding the root certificate.
func (ca *CA) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root())
	return p
}

// RootsPEM returns the root certificate PEM-encoded.
func (ca *CA) RootsPEM() []byte { return CertsPEM(ca.Root()) }

// IntermediatesPool returns a pool holding Intermediates.
func (ca *CA) IntermediatesPool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range ca.Intermediates() {
		p.AddCert(c)
	}
	return p
}

// CertsPEM PEM-encodes certificates, in order.
func CertsPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// KeyPEM PEM-encodes a private key as PKCS#8.
func KeyPEM(tb testing.TB, key crypto.Signer) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("testca: marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Fingerprint returns the SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) [32]byte { return sha256.Sum256(c.Raw) }

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("testca: generate key: %v", err)
	}
	return k
}

func newSerial(tb testing.TB) *big.Int {
	tb.Helper()
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		tb.Fatalf("testca: serial: %v", err)
	}
	return s.Add(s, big.NewInt(1))
}

func createCert(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		tb.Fatalf("testca: create certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testca: parse certificate: %v", err)
	}
	return c
}

// KeyDER returns a private key as PKCS#8 DER.
func KeyDER(tb testing.TB, key crypto.Signer) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("testca: marshal key: %v", err)
	}
	return der
}
