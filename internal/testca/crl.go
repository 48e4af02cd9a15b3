package testca

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"time"
)

// CRLOption changes a CRL made by CreateCRL.
type CRLOption interface{ applyCRL(*crlConfig) }

type crlConfig struct {
	tmpl *x509.RevocationList
}

type crlOptionFunc func(*crlConfig)

func (f crlOptionFunc) applyCRL(c *crlConfig) { f(c) }

// Revoked lists serial numbers as revoked (revocation time: thisUpdate).
func Revoked(serials ...*big.Int) CRLOption {
	return crlOptionFunc(func(c *crlConfig) {
		for _, s := range serials {
			c.tmpl.RevokedCertificateEntries = append(c.tmpl.RevokedCertificateEntries,
				x509.RevocationListEntry{SerialNumber: s})
		}
	})
}

// RevokedCerts lists certificates as revoked.
func RevokedCerts(certs ...*x509.Certificate) CRLOption {
	return crlOptionFunc(func(c *crlConfig) {
		for _, cert := range certs {
			c.tmpl.RevokedCertificateEntries = append(c.tmpl.RevokedCertificateEntries,
				x509.RevocationListEntry{SerialNumber: cert.SerialNumber})
		}
	})
}

// ThisUpdate sets thisUpdate (default: the CA's now minus one minute).
func ThisUpdate(t time.Time) CRLOption {
	return crlOptionFunc(func(c *crlConfig) { c.tmpl.ThisUpdate = t })
}

// NextUpdate sets nextUpdate (default: the CA's now plus one hour).
func NextUpdate(t time.Time) CRLOption {
	return crlOptionFunc(func(c *crlConfig) { c.tmpl.NextUpdate = t })
}

// CRLNumber sets the CRL number (default 1).
func CRLNumber(n int64) CRLOption {
	return crlOptionFunc(func(c *crlConfig) { c.tmpl.Number = big.NewInt(n) })
}

// CreateCRL returns a DER CRL signed by ca (the issuing intermediate for CAs
// made by NewCA).
func (ca *CA) CreateCRL(opts ...CRLOption) []byte {
	ca.tb.Helper()
	cfg := &crlConfig{tmpl: &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: ca.now.Add(-time.Minute),
		NextUpdate: ca.now.Add(time.Hour),
	}}
	for _, o := range opts {
		o.applyCRL(cfg)
	}
	for i := range cfg.tmpl.RevokedCertificateEntries {
		if e := &cfg.tmpl.RevokedCertificateEntries[i]; e.RevocationTime.IsZero() {
			e.RevocationTime = cfg.tmpl.ThisUpdate
		}
	}
	der, err := x509.CreateRevocationList(rand.Reader, cfg.tmpl, ca.Cert, ca.Key)
	if err != nil {
		ca.tb.Fatalf("testca: create CRL: %v", err)
	}
	return der
}

// CRLPEM PEM-encodes a DER CRL ("X509 CRL").
func CRLPEM(der []byte) []byte { return pemBlock("X509 CRL", der) }

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
