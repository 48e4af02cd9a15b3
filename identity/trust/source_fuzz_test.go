package trust_test

import (
	"math/big"
	"strings"
	"testing"

	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

func FuzzParseCRL(f *testing.F) {
	ca := testca.NewCA(f, td)
	der := ca.CreateCRL(testca.Revoked(big.NewInt(1), big.NewInt(1<<40)), testca.CRLNumber(9))
	f.Add(der)
	f.Add(testca.CRLPEM(der))
	f.Add(ca.CreateCRL())
	f.Add([]byte("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := trust.ParseCRL(data)
		if err != nil {
			if c != nil || !strings.HasPrefix(err.Error(), "trust: ") {
				t.Fatalf("bad error result: %v", err)
			}
			return
		}
		for _, e := range c.RevocationList().RevokedCertificateEntries {
			if e.SerialNumber != nil && e.SerialNumber.Sign() >= 0 {
				if _, ok := c.Revoked(e.SerialNumber); !ok {
					t.Fatalf("listed serial %v not reported revoked", e.SerialNumber)
				}
			}
		}
		_ = c.CheckSignatureFrom(ca.Cert)
	})
}

func FuzzParseBundlePEM(f *testing.F) {
	a, b := testca.NewCA(f, td), testca.NewCA(f, td)
	f.Add(a.RootsPEM())
	f.Add(append(a.RootsPEM(), b.RootsPEM()...))
	f.Add(testca.CertsPEM(a.CreateSVID(alice).Leaf))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		bundle, err := trust.ParseBundlePEM(data)
		if err != nil {
			if bundle != nil || !strings.HasPrefix(err.Error(), "trust: ") {
				t.Fatalf("bad error result: %v", err)
			}
			return
		}
		if len(bundle.Roots()) == 0 {
			t.Fatal("accepted an empty bundle")
		}
		for _, c := range bundle.Roots() {
			if !c.IsCA {
				t.Fatal("accepted a non-CA certificate")
			}
		}
	})
}

func FuzzParseCRLs(f *testing.F) {
	a, b := testca.NewCA(f, td), testca.NewCA(f, td)
	da, db := a.CreateCRL(testca.Revoked(big.NewInt(7))), b.CreateCRL()
	f.Add(da)
	f.Add(append(testca.CRLPEM(da), testca.CRLPEM(db)...))
	f.Add(append(testca.CRLPEM(da), testca.CRLPEM(da)...))
	f.Add(append(testca.CRLPEM(da), "junk"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := trust.ParseCRLs(data)
		if err != nil {
			if l != nil || !strings.HasPrefix(err.Error(), "trust: ") {
				t.Fatalf("bad error result: %v", err)
			}
			return
		}
		if len(l) == 0 || len(l) > trust.MaxCRLsPerSet {
			t.Fatalf("%d CRLs", len(l))
		}
		for _, c := range l {
			_ = c.CheckSignatureFrom(a.Cert)
		}
	})
}
