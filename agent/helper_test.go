package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"
)

// testCA is a small two-level PKI for the agent's tests: a root and an
// intermediate that issues SPIFFE leaves for 127.0.0.1 and localhost.
type testCA struct {
	tb       testing.TB
	mu       sync.Mutex
	root     *x509.Certificate
	rootKey  crypto.Signer
	inter    *x509.Certificate
	interKey crypto.Signer
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newTestCA(tb testing.TB) *testCA {
	tb.Helper()
	ca := &testCA{tb: tb}
	ca.rotate()
	return ca
}

// rotate replaces the root and intermediate with new ones.
func (ca *testCA) rotate() {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	rk := newKey(ca.tb)
	root := &x509.Certificate{
		SerialNumber: serial(ca.tb), Subject: pkix.Name{CommonName: "Test Root " + serial(ca.tb).Text(16)},
		NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	ca.root = mustCreate(ca.tb, root, root, rk.Public(), rk)
	ca.rootKey = rk
	ik := newKey(ca.tb)
	inter := &x509.Certificate{
		SerialNumber: serial(ca.tb), Subject: pkix.Name{CommonName: "Test Intermediate"},
		NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(5 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		MaxPathLenZero: true,
	}
	ca.inter = mustCreate(ca.tb, inter, ca.root, ik.Public(), rk)
	ca.interKey = ik
}

func (ca *testCA) roots() []*x509.Certificate {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return []*x509.Certificate{ca.root}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, r := range ca.roots() {
		p.AddCert(r)
	}
	return p
}

// issue signs a leaf for pub valid from notBefore to notAfter.
func (ca *testCA) issue(name string, pub crypto.PublicKey, notBefore, notAfter time.Time) []*x509.Certificate {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	u, _ := url.Parse("spiffe://example.test/server/" + name)
	tmpl := &x509.Certificate{
		SerialNumber: serial(ca.tb), Subject: pkix.Name{CommonName: name},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{u}, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	return []*x509.Certificate{mustCreate(ca.tb, tmpl, ca.inter, pub, ca.interKey), ca.inter}
}

// cert returns a fresh key and a certificate for it.
func (ca *testCA) cert(name string, notBefore, notAfter time.Time) tls.Certificate {
	k := newKey(ca.tb)
	return tlsCert(ca.issue(name, k.Public(), notBefore, notAfter), k)
}

// renewer returns a Renewer that keeps the key and issues for lifetime from
// now() on.
func (ca *testCA) renewer(now func() time.Time, lifetime time.Duration) RenewerFunc {
	return func(_ context.Context, cur tls.Certificate) (tls.Certificate, error) {
		n := now()
		chain := ca.issue(cur.Leaf.Subject.CommonName, cur.Leaf.PublicKey, n, n.Add(lifetime))
		return tlsCert(chain, cur.PrivateKey.(crypto.Signer)), nil
	}
}

func tlsCert(chain []*x509.Certificate, key crypto.Signer) tls.Certificate {
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func mustCreate(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func pemCerts(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// armedRecorder collects the times a source arms its renewal timer, so tests
// wait for the loop instead of sleeping.
type armedRecorder chan time.Time

func newArmed() armedRecorder { return make(armedRecorder, 1000) }

func (a armedRecorder) option() Option { return withArmed(func(at time.Time) { a <- at }) }

func (a armedRecorder) next(tb testing.TB) time.Time {
	tb.Helper()
	select {
	case at := <-a:
		return at
	case <-time.After(30 * time.Second):
		tb.Fatal("the source did not arm its timer")
		return time.Time{}
	}
}

func (a armedRecorder) none(tb testing.TB) {
	tb.Helper()
	select {
	case at := <-a:
		tb.Fatalf("unexpected attempt, next armed for %v", at)
	default:
	}
}
