package trust_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/mcpca/mcpca/identity/trust"
)

// A trust bundle from a PEM file, held in a BundleStore that a verifier
// reads (and a refresh loop may swap whole), and a CRL checked against the
// root that signed it.
func Example() {
	// A root and a CRL it signs, as the CA's /roots and /crl serve them.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Acme MCP Root CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	root, _ := x509.ParseCertificate(der)
	dir, _ := os.MkdirTemp("", "trust-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "root_ca.crt")
	_ = os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	crlDER, _ := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(7), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(42), RevocationTime: now}},
	}, root, key)

	bundle, err := trust.LoadBundleFile(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	store := trust.NewBundleStore(bundle)
	b, _ := store.Bundle()
	fmt.Println("roots:", len(b.Roots()), b.Roots()[0].Subject.CommonName)

	crl, err := trust.ParseCRL(crlDER)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("CRL number:", crl.Number(), "signature:", crl.CheckSignatureFrom(root))
	_, revoked := crl.Revoked(big.NewInt(42))
	fmt.Println("serial 42 revoked:", revoked, "stale:", crl.Stale(now, 0))

	// A file that is not a bundle is refused with what is wrong.
	_ = os.WriteFile(path, []byte("not PEM"), 0o644)
	_, err = trust.LoadBundleFile(path)
	fmt.Println(err != nil)
	// Output:
	// roots: 1 Acme MCP Root CA
	// CRL number: 7 signature: <nil>
	// serial 42 revoked: true stale: false
	// true
}
