package trust

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/mcpca/mcpca/internal/certname"
	"github.com/mcpca/mcpca/internal/pemfile"
)

// Bundle is an immutable set of trusted CA certificates: the roots that
// chains must end in, and optionally intermediates used to complete chains
// that peers send without them. Every Bundle carries a generation number,
// unique in the process, so caches can tell one bundle from the next.
type Bundle struct {
	roots         []*x509.Certificate
	intermediates []*x509.Certificate
	rootPool      *x509.CertPool
	interPool     *x509.CertPool
	generation    uint64
}

var bundleGeneration atomic.Uint64

// NewBundle returns a bundle trusting roots. Every certificate must be a CA
// certificate; at least one root is required.
func NewBundle(roots []*x509.Certificate, intermediates ...*x509.Certificate) (*Bundle, error) {
	b, err := newBundle(roots, intermediates)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return b, nil
}

func newBundle(roots, intermediates []*x509.Certificate) (*Bundle, error) {
	if len(roots) == 0 {
		return nil, errors.New("bundle has no root certificates")
	}
	b := &Bundle{rootPool: x509.NewCertPool(), interPool: x509.NewCertPool(), generation: bundleGeneration.Add(1)}
	for _, c := range roots {
		if c == nil || !c.IsCA {
			return nil, fmt.Errorf("bundle: %s is not a CA certificate", certname.Of(c))
		}
		b.roots = append(b.roots, c)
		b.rootPool.AddCert(c)
	}
	for _, c := range intermediates {
		if c == nil || !c.IsCA {
			return nil, fmt.Errorf("bundle: %s is not a CA certificate", certname.Of(c))
		}
		b.intermediates = append(b.intermediates, c)
		b.interPool.AddCert(c)
	}
	return b, nil
}

// ParseBundlePEM parses PEM CERTIFICATE blocks into a bundle; every
// certificate becomes a trust anchor. Blocks of other types are errors.
func ParseBundlePEM(data []byte) (*Bundle, error) {
	b, err := parseBundlePEM(data)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return b, nil
}

func parseBundlePEM(data []byte) (*Bundle, error) {
	roots, err := pemfile.ParseCertificates(data, pemfile.RefuseOthers)
	switch {
	case errors.Is(err, pemfile.ErrNoCertificate):
		return nil, errors.New("bundle has no PEM certificates")
	case err != nil:
		return nil, fmt.Errorf("bundle: %v", err)
	}
	return newBundle(roots, nil)
}

// LoadBundleFile reads a PEM trust bundle file.
func LoadBundleFile(path string) (*Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errorf("bundle: %v", err)
	}
	b, err := parseBundlePEM(data)
	if err != nil {
		return nil, errorf("%s: %w", path, err)
	}
	return b, nil
}

// Roots returns the trust anchors. The slice must not be modified.
func (b *Bundle) Roots() []*x509.Certificate { return b.roots }

// Intermediates returns the extra intermediates. The slice must not be
// modified.
func (b *Bundle) Intermediates() []*x509.Certificate { return b.intermediates }

// Generation returns the bundle's generation number.
func (b *Bundle) Generation() uint64 { return b.generation }

// RootPool returns the roots as a pool, shared: do not add to it.
func (b *Bundle) RootPool() *x509.CertPool { return b.rootPool }

// IntermediatePool returns the bundle's intermediates as a pool, shared by
// every caller: do not add to it (Clone it first, as the verifier does).
func (b *Bundle) IntermediatePool() *x509.CertPool { return b.interPool }

// BundleSource supplies the current trust bundle. Bundle is called on every
// verification, so it must be cheap (an atomic load), and it must return
// the same *Bundle until the bundle changes.
type BundleSource interface {
	Bundle() (*Bundle, error)
}

// BundleStore is a BundleSource holding one bundle that can be swapped at any
// time: Set takes effect for the next verification. It is the building
// block of every refreshing source and is safe for concurrent use.
type BundleStore struct {
	p atomic.Pointer[Bundle]
}

// NewBundleStore returns a store holding b (which may be nil: Bundle then
// fails until Set is called).
func NewBundleStore(b *Bundle) *BundleStore {
	s := &BundleStore{}
	if b != nil {
		s.p.Store(b)
	}
	return s
}

// Bundle returns the current bundle.
func (s *BundleStore) Bundle() (*Bundle, error) {
	if b := s.p.Load(); b != nil {
		return b, nil
	}
	return nil, errorf("no bundle loaded")
}

// Set replaces the bundle.
func (s *BundleStore) Set(b *Bundle) { s.p.Store(b) }

// RootsProvider is anything that knows the current roots, such as
// agent.Source.
type RootsProvider interface {
	Roots() []*x509.Certificate
}

// RootsSource adapts a RootsProvider to a BundleSource. It builds a new Bundle only
// when the provider returns a different roots slice.
func RootsSource(p RootsProvider) BundleSource { return &rootsSource{p: p} }

type rootsSource struct {
	p   RootsProvider
	mu  sync.Mutex
	cur atomic.Pointer[Bundle] // built from the roots slice it holds
}

func (r *rootsSource) Bundle() (*Bundle, error) {
	roots := r.p.Roots()
	if b := r.cur.Load(); b != nil && slices.Equal(roots, b.roots) {
		return b, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if b := r.cur.Load(); b != nil && slices.Equal(roots, b.roots) {
		return b, nil
	}
	b, err := NewBundle(roots)
	if err != nil {
		return nil, err
	}
	// Keep the provider's slice so the next call compares by identity.
	b.roots = roots
	r.cur.Store(b)
	return b, nil
}
