package agent

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"time"

	"github.com/mcpca/mcpca/identity"
)

// Snapshot is one state of a Source: a certificate chain, its private key and
// the trust bundle. It is immutable once published; a renewal publishes a new
// one.
type Snapshot struct {
	// Certificate is the chain (leaf first) and key, with Leaf set, ready
	// for tls.Config.
	Certificate tls.Certificate
	// Roots is the trust bundle: the CA roots peers chain to.
	Roots []*x509.Certificate

	pool *x509.CertPool
}

// NewSnapshot checks that cert's chain and key match and returns a snapshot
// of them with the trust bundle roots.
func NewSnapshot(cert tls.Certificate, roots []*x509.Certificate) (*Snapshot, error) {
	cert, err := prepareCertificate(cert)
	if err != nil {
		return nil, err
	}
	return newSnapshot(cert, roots), nil
}

func newSnapshot(cert tls.Certificate, roots []*x509.Certificate) *Snapshot {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	return &Snapshot{Certificate: cert, Roots: roots, pool: pool}
}

// Leaf returns the leaf certificate.
func (s *Snapshot) Leaf() *x509.Certificate { return s.Certificate.Leaf }

// Chain returns the certificate chain, leaf first, as sent in a handshake.
func (s *Snapshot) Chain() []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(s.Certificate.Certificate))
	out = append(out, s.Certificate.Leaf)
	for _, der := range s.Certificate.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// Key returns the private key.
func (s *Snapshot) Key() crypto.Signer {
	k, _ := s.Certificate.PrivateKey.(crypto.Signer)
	return k
}

// RootPool returns the trust bundle as a pool. The pool must not be modified.
func (s *Snapshot) RootPool() *x509.CertPool { return s.pool }

// NotAfter returns the end of the leaf's validity.
func (s *Snapshot) NotAfter() time.Time { return s.Certificate.Leaf.NotAfter }

// Identity parses the mcpca identity the leaf carries.
func (s *Snapshot) Identity(opts ...identity.ParseOption) (*identity.Identity, error) {
	return identity.FromCertificate(s.Certificate.Leaf, opts...)
}

// prepareCertificate checks a certificate and key handed to the package and
// sets Leaf.
func prepareCertificate(cert tls.Certificate) (tls.Certificate, error) {
	if len(cert.Certificate) == 0 {
		return cert, errorf("empty certificate chain")
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return cert, errorf("parsing certificate: %v", err)
		}
		cert.Leaf = leaf
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return cert, errorf("private key is missing or cannot sign")
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.Leaf.PublicKey) {
		return cert, errorf("certificate and private key do not match")
	}
	return cert, nil
}

// sameRoots reports whether two bundles hold the same certificates in the
// same order.
func sameRoots(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Raw, b[i].Raw) {
			return false
		}
	}
	return true
}
