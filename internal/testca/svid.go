package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/identity"
)

// SVID is a leaf certificate issued by a test CA, with its key.
type SVID struct {
	// Leaf is the end-entity certificate.
	Leaf *x509.Certificate
	// Chain is the leaf followed by the intermediates, root excluded: what a
	// TLS peer presents.
	Chain []*x509.Certificate
	// Key is the leaf's private key.
	Key *ecdsa.PrivateKey
	// TLS is Chain and Key as a tls.Certificate (Leaf set).
	TLS tls.Certificate
}

// ChainPEM returns the leaf and intermediates PEM-encoded.
func (s *SVID) ChainPEM() []byte { return CertsPEM(s.Chain...) }

// ChainDER returns the raw DER of the chain, leaf first.
func (s *SVID) ChainDER() [][]byte {
	out := make([][]byte, len(s.Chain))
	for i, c := range s.Chain {
		out[i] = c.Raw
	}
	return out
}

// WriteFiles writes cert.pem (chain) and key.pem into dir and returns their
// paths.
func (s *SVID) WriteFiles(tb testing.TB, dir string) (certPath, keyPath string) {
	tb.Helper()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, s.ChainPEM(), 0o600); err != nil {
		tb.Fatalf("testca: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(s.Key)
	if err != nil {
		tb.Fatalf("testca: %v", err)
	}
	if err := os.WriteFile(keyPath, pemBlock("PRIVATE KEY", der), 0o600); err != nil {
		tb.Fatalf("testca: %v", err)
	}
	return certPath, keyPath
}

// SVIDOption changes the leaf CreateSVID issues. Options run in order on the
// template after the defaults are set, so later options win.
type SVIDOption interface{ applySVID(*svidConfig) }

type svidConfig struct {
	tmpl *x509.Certificate
	oids identity.OIDs
	key  *ecdsa.PrivateKey
	pub  crypto.PublicKey
	// deferred run after every other option, so raw overrides win over
	// WithRoles/WithAttributes regardless of order.
	roles, attrs []byte
	hasRoles     bool
	hasAttrs     bool
	extra        []pkix.Extension
}

type svidOptionFunc func(*svidConfig)

func (f svidOptionFunc) applySVID(c *svidConfig) { f(c) }

// WithTemplate runs f on the leaf template: the escape hatch for any mutation
// the other options do not cover.
func WithTemplate(f func(*x509.Certificate)) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { f(c.tmpl) })
}

// WithRoles sets the roles extension, encoded with identity.EncodeRoles.
func WithRoles(roles ...string) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) {
		der, err := identity.EncodeRoles(roles)
		if err != nil {
			panic("testca: WithRoles: " + err.Error())
		}
		c.roles, c.hasRoles = der, true
	})
}

// WithAttributes sets the attributes extension, encoded with
// identity.EncodeAttributes.
func WithAttributes(attrs map[string]string) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) {
		der, err := identity.EncodeAttributes(attrs)
		if err != nil {
			panic("testca: WithAttributes: " + err.Error())
		}
		c.attrs, c.hasAttrs = der, true
	})
}

// WithRawRoles sets the roles extension value to der, unchecked.
func WithRawRoles(der []byte) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { c.roles, c.hasRoles = der, true })
}

// WithRawAttributes sets the attributes extension value to der, unchecked.
func WithRawAttributes(der []byte) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { c.attrs, c.hasAttrs = der, true })
}

// WithOIDs sets the OIDs under which roles and attributes are written
// (default identity.DefaultOIDs).
func WithOIDs(o identity.OIDs) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { c.oids = o })
}

// WithExtension adds an arbitrary extension (critical or not).
func WithExtension(id asn1.ObjectIdentifier, critical bool, value []byte) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) {
		c.extra = append(c.extra, pkix.Extension{Id: id, Critical: critical, Value: value})
	})
}

// UnknownCriticalOID is the OID WithUnknownCriticalExtension uses.
var UnknownCriticalOID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 42, 1}

// WithUnknownCriticalExtension adds a critical extension no verifier knows.
func WithUnknownCriticalExtension() SVIDOption {
	return WithExtension(UnknownCriticalOID, true, []byte{0x05, 0x00})
}

// WithURIs appends URI SANs after the SPIFFE ID.
func WithURIs(uris ...string) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) {
		for _, s := range uris {
			c.tmpl.URIs = append(c.tmpl.URIs, mustURL(s))
		}
	})
}

// WithDNSNames sets the DNS SANs.
func WithDNSNames(names ...string) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { c.tmpl.DNSNames = names })
}

// WithIPAddresses sets the IP SANs.
func WithIPAddresses(ips ...net.IP) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { c.tmpl.IPAddresses = ips })
}

// WithIsCA marks the leaf as a CA (basic constraints cA=TRUE).
func WithIsCA() SVIDOption {
	return svidOptionFunc(func(c *svidConfig) {
		c.tmpl.IsCA, c.tmpl.BasicConstraintsValid = true, true
	})
}

// WithKeyUsage replaces the key usage bits.
func WithKeyUsage(ku x509.KeyUsage) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { c.tmpl.KeyUsage = ku })
}

// WithExtKeyUsage replaces the extended key usages.
func WithExtKeyUsage(eku ...x509.ExtKeyUsage) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { c.tmpl.ExtKeyUsage = eku })
}

// WithValidity sets NotBefore and NotAfter.
func WithValidity(notBefore, notAfter time.Time) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { c.tmpl.NotBefore, c.tmpl.NotAfter = notBefore, notAfter })
}

// WithSerial sets the serial number.
func WithSerial(serial *big.Int) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { c.tmpl.SerialNumber = serial })
}

// WithKey makes the leaf certify key's public key instead of a fresh one.
func WithKey(key *ecdsa.PrivateKey) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { c.key = key })
}

// WithPublicKey makes the leaf certify pub (for example from a CSR). The
// SVID's Key and TLS private key are then nil.
func WithPublicKey(pub crypto.PublicKey) SVIDOption {
	return svidOptionFunc(func(c *svidConfig) { c.pub = pub })
}

// CreateSVID issues a leaf for id, which is a string, an identity.ID or a
// *url.URL. The leaf is a valid mcpca X509-SVID unless options say otherwise:
// one URI SAN, not a CA, digitalSignature, valid from one minute before the
// CA's now for one hour, clientAuth for client IDs and serverAuth+clientAuth
// for server IDs (decided by the first path segment).
func (ca *CA) CreateSVID(id any, opts ...SVIDOption) *SVID {
	ca.tb.Helper()
	var u *url.URL
	switch v := id.(type) {
	case string:
		u = mustURL(v)
	case identity.ID:
		u = v.URL()
	case *url.URL:
		u = v
	default:
		ca.tb.Fatalf("testca: CreateSVID: id must be a string, identity.ID or *url.URL, not %T", id)
	}
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if strings.HasPrefix(u.Path, "/server/") {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	cfg := &svidConfig{
		oids: identity.DefaultOIDs,
		tmpl: &x509.Certificate{
			SerialNumber:          newSerial(ca.tb),
			NotBefore:             ca.now.Add(-time.Minute),
			NotAfter:              ca.now.Add(time.Hour),
			URIs:                  []*url.URL{u},
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           eku,
			BasicConstraintsValid: true,
		},
	}
	for _, o := range opts {
		o.applySVID(cfg)
	}
	if cfg.hasRoles {
		cfg.tmpl.ExtraExtensions = append(cfg.tmpl.ExtraExtensions, pkix.Extension{Id: cfg.oids.Roles, Value: cfg.roles})
	}
	if cfg.hasAttrs {
		cfg.tmpl.ExtraExtensions = append(cfg.tmpl.ExtraExtensions, pkix.Extension{Id: cfg.oids.Attributes, Value: cfg.attrs})
	}
	cfg.tmpl.ExtraExtensions = append(cfg.tmpl.ExtraExtensions, cfg.extra...)

	key := cfg.key
	pub := cfg.pub
	if pub == nil {
		if key == nil {
			key = newKey(ca.tb)
		}
		pub = &key.PublicKey
	}
	leaf := createCert(ca.tb, cfg.tmpl, ca.Cert, pub, ca.Key)
	chain := append([]*x509.Certificate{leaf}, ca.Intermediates()...)
	s := &SVID{Leaf: leaf, Chain: chain, Key: key}
	s.TLS = tls.Certificate{Leaf: leaf}
	for _, c := range chain {
		s.TLS.Certificate = append(s.TLS.Certificate, c.Raw)
	}
	if key != nil {
		s.TLS.PrivateKey = key
	}
	return s
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic("testca: bad URI " + s + ": " + err.Error())
	}
	return u
}
