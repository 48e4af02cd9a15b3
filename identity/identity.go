// Package identity is the mcpca identity model: it parses a peer certificate
// into an Identity (SPIFFE ID, roles, attributes, validity), holds the one
// codec for the roles and attributes extensions, verifies chains against a
// swappable trust bundle (with CRL revocation checks), and provides
// tls.Config helpers that check peers in VerifyConnection. Bundles, CRLs
// and the sources that keep them fresh are identity/trust, the hash-chained
// decision log identity/audit, Cedar authorization identity/policy and the
// MCP SDK adapter identity/mcpauth.
//
// It is the library MCP servers import; it never imports the CA.
package identity

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"net"
	"time"
)

// Identity is who a certificate says its holder is. It is a value: once
// parsed it is never modified, so it can be shared between goroutines.
type Identity struct {
	ID          ID
	Roles       []string
	Attributes  map[string]string
	Serial      *big.Int
	NotBefore   time.Time
	NotAfter    time.Time
	Fingerprint [sha256.Size]byte // SHA-256 of the certificate's DER
	DNSNames    []string
	IPAddresses []net.IP
}

// SerialHex returns the serial number as lower-case hex.
func (id *Identity) SerialHex() string {
	if id.Serial == nil {
		return ""
	}
	return id.Serial.Text(16)
}

// FingerprintHex returns the SHA-256 fingerprint as lower-case hex.
func (id *Identity) FingerprintHex() string { return hex.EncodeToString(id.Fingerprint[:]) }

// HasRole reports whether the identity carries role r.
func (id *Identity) HasRole(r string) bool {
	for _, have := range id.Roles {
		if have == r {
			return true
		}
	}
	return false
}

// parseConfig holds the options of FromCertificate.
type parseConfig struct {
	oids OIDs
}

// ParseOption configures FromCertificate.
type ParseOption interface{ applyParse(*parseConfig) }

// OIDsOption is an option both FromCertificate and NewVerifier accept.
type OIDsOption interface {
	ParseOption
	VerifyOption
}

type oidsOption OIDs

func (o oidsOption) applyParse(c *parseConfig)   { c.oids = OIDs(o) }
func (o oidsOption) applyVerify(c *verifyConfig) { c.oids = OIDs(o) }

// WithOIDs sets the extension OIDs to read, for CAs initialised with their own
// --oid-arc. The default is DefaultOIDs.
func WithOIDs(o OIDs) OIDsOption { return oidsOption(o) }

// FromCertificate parses the identity a leaf certificate carries. It checks the
// shape of an mcpca X509-SVID (exactly one spiffe URI SAN of the form
// spiffe://<td>/<client|server>/<name>, not a CA, digitalSignature and no
// keyCertSign or cRLSign key usage) and decodes the roles and attributes
// extensions. It does not verify the chain, validity or revocation: that is
// the Verifier's job.
func FromCertificate(cert *x509.Certificate, opts ...ParseOption) (*Identity, error) {
	cfg := parseConfig{oids: DefaultOIDs}
	for _, o := range opts {
		o.applyParse(&cfg)
	}
	if cert == nil {
		return nil, errorf("no certificate: %w", ErrNotSVID)
	}
	return parseCertificate(cert, cfg.oids, sha256.Sum256(cert.Raw))
}

// parseCertificate is FromCertificate with the fingerprint computed by the
// caller.
func parseCertificate(cert *x509.Certificate, oids OIDs, fp [sha256.Size]byte) (*Identity, error) {
	if cert.IsCA {
		return nil, errorf("certificate is a CA certificate, not a leaf: %w", ErrNotSVID)
	}
	if cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, errorf("certificate lacks the digitalSignature key usage: %w", ErrNotSVID)
	}
	if cert.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return nil, errorf("leaf certificate has keyCertSign or cRLSign key usage: %w", ErrNotSVID)
	}
	switch len(cert.URIs) {
	case 0:
		return nil, errorf("certificate has no URI SAN (SPIFFE ID): %w", ErrNotSVID)
	case 1:
	default:
		return nil, errorf("certificate has %d URI SANs, an X509-SVID has exactly one: %w", len(cert.URIs), ErrNotSVID)
	}
	sid, err := fromURL(cert.URIs[0])
	if err != nil {
		return nil, err
	}
	out := &Identity{
		ID:          sid,
		Serial:      cert.SerialNumber,
		NotBefore:   cert.NotBefore,
		NotAfter:    cert.NotAfter,
		Fingerprint: fp,
		DNSNames:    cert.DNSNames,
		IPAddresses: cert.IPAddresses,
	}
	var seenRoles, seenAttrs bool
	for i := range cert.Extensions {
		ext := &cert.Extensions[i]
		switch {
		case ext.Id.Equal(oids.Roles):
			if seenRoles {
				return nil, errorf("certificate carries the roles extension twice: %w", ErrMalformedExtension)
			}
			seenRoles = true
			if out.Roles, err = DecodeRoles(ext.Value); err != nil {
				return nil, err
			}
		case ext.Id.Equal(oids.Attributes):
			if seenAttrs {
				return nil, errorf("certificate carries the attributes extension twice: %w", ErrMalformedExtension)
			}
			seenAttrs = true
			if out.Attributes, err = DecodeAttributes(ext.Value); err != nil {
				return nil, err
			}
		}
	}
	if out.Attributes == nil {
		out.Attributes = map[string]string{}
	}
	return out, nil
}
