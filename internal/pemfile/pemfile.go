// Package pemfile is the one PEM helper of mcpca: certificates and private
// keys to and from PEM, for the CA, the agent, the verifier's bundles and
// the CLI. Its errors carry no package prefix: callers say what they read.
package pemfile

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ErrNoCertificate is returned for data without a CERTIFICATE block.
var ErrNoCertificate = errors.New("no PEM certificate found")

// Others says what ParseCertificates does with PEM blocks that are not
// certificates.
type Others int

const (
	// SkipOthers ignores them: a chain file, or a file holding a key and
	// its chain.
	SkipOthers Others = iota
	// RefuseOthers refuses them, naming the block: a trust bundle, where a
	// key or anything else means the wrong file was given.
	RefuseOthers
)

// ParseCertificates parses the CERTIFICATE blocks of PEM data, in order.
// Text outside PEM blocks is ignored. It fails with ErrNoCertificate when
// there is none, and names the block of a certificate that does not parse.
func ParseCertificates(data []byte, others Others) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			if others == RefuseOthers {
				return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n, block.Type)
			}
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, ErrNoCertificate
	}
	return out, nil
}

// EncodeCertificates returns the PEM encoding of certs, in order.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// EncodeChain returns the PEM encoding of the chain of c (leaf first).
func EncodeChain(c tls.Certificate) []byte {
	var buf bytes.Buffer
	for _, der := range c.Certificate {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return buf.Bytes()
}

// EncodeKey returns key as a PKCS#8 "PRIVATE KEY" PEM block.
func EncodeKey(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey reads the first private key of PEM data: PKCS#8, SEC1 EC or
// PKCS#1 RSA. Other blocks are skipped.
func ParseKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no private key found")
		}
		var k any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parsing private key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("private key of type %T cannot sign", k)
		}
		return s, nil
	}
}
