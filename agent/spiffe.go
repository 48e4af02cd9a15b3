package agent

import (
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// go-spiffe interoperability: a Source is an x509svid.Source and a
// Workload is both an x509svid.Source and an x509bundle.Source, so they plug
// into go-spiffe's spiffetls/tlsconfig (MTLSServerConfig, MTLSClientConfig,
// with its Authorizers) as a Workload API source does.
var (
	_ x509svid.Source   = (*Source)(nil)
	_ x509svid.Source   = (*Workload)(nil)
	_ x509bundle.Source = (*Workload)(nil)
)

// GetX509SVID returns the current certificate as a go-spiffe X509-SVID.
func (s *Source) GetX509SVID() (*x509svid.SVID, error) {
	snap := s.Current()
	leaf := snap.Leaf()
	if len(leaf.URIs) != 1 {
		return nil, errorf("the certificate has %d URI SANs, an X509-SVID has one", len(leaf.URIs))
	}
	id, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return nil, errorf("the certificate's URI SAN is not a SPIFFE ID: %w", err)
	}
	return &x509svid.SVID{ID: id, Certificates: snap.Chain(), PrivateKey: snap.Key()}, nil
}

// GetX509SVID returns the workload's current certificate as a go-spiffe
// X509-SVID.
func (w *Workload) GetX509SVID() (*x509svid.SVID, error) { return w.src.GetX509SVID() }

// GetX509BundleForTrustDomain returns the CA's current roots as the bundle
// of the workload's trust domain, and an error for any other: an mcpca CA
// vouches for one trust domain.
func (w *Workload) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td.Name() != w.id.TrustDomain {
		return nil, errorf("no bundle for trust domain %q (this workload trusts %q)", td.Name(), w.id.TrustDomain)
	}
	return x509bundle.FromX509Authorities(td, w.src.Roots()), nil
}
