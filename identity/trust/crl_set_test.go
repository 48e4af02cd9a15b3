package trust_test

import (
	"context"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

// TestCRLSetCoversEveryIntermediate is the rotation case: two intermediates
// of one root (here with the same name, the hardest case) each sign their
// own CRL; a fetcher of the set lets the Verifier check leaves of both, and
// a revocation in either list refuses its leaf.
func TestCRLSetCoversEveryIntermediate(t *testing.T) {
	root := testca.NewRoot(t, td, testca.WithTime(t0))
	oldCA, newCA := root.ChildCA(), root.ChildCA()
	oldLeaf, oldRevoked, newLeaf := oldCA.CreateSVID(alice), oldCA.CreateSVID(alice), newCA.CreateSVID(alice)
	path := filepath.Join(t.TempDir(), "crls.pem")
	write := func(crls ...[]byte) {
		t.Helper()
		var b []byte
		for _, c := range crls {
			b = append(b, testca.CRLPEM(c)...)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	store := trust.NewBundleStore(mustBundle(t, root.Cert))
	f, err := trust.NewCRLFetcher(path, trust.WithBundle(store))
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(store, identity.WithTrustDomains(td), identity.WithClock(clock.NewFake(t0)), identity.WithCRL(f))
	if err != nil {
		t.Fatal(err)
	}
	// Only the new intermediate's CRL: the old leaf's status is unknown
	// (the outage this set avoids).
	write(newCA.CreateCRL(testca.CRLNumber(1)))
	if err := f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(oldLeaf.Chain, identity.KindClient); err == nil || !strings.Contains(err.Error(), "revocation status unknown") {
		t.Fatalf("old leaf with only the new CRL: %v", err)
	}
	write(newCA.CreateCRL(testca.CRLNumber(2)), oldCA.CreateCRL(testca.CRLNumber(2), testca.RevokedCerts(oldRevoked.Leaf)))
	if err := f.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l, _ := f.CRLs(); len(l) != 2 {
		t.Fatalf("%d CRLs", len(l))
	}
	for _, c := range []*testca.SVID{oldLeaf, newLeaf} {
		if _, err := v.Verify(c.Chain, identity.KindClient); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(oldRevoked.Chain, identity.KindClient); err == nil || !strings.Contains(err.Error(), "is revoked since") {
		t.Fatalf("revoked old leaf: %v", err)
	}
	// A replayed older list of one issuer is refused; the set stays.
	write(newCA.CreateCRL(testca.CRLNumber(3)), oldCA.CreateCRL(testca.CRLNumber(1)))
	assertErr(t, f.Refresh(context.Background()), "trust: CRL from "+path+": number 1 is older than the current 2", nil)
	if _, err := v.Verify(oldLeaf.Chain, identity.KindClient); err != nil {
		t.Fatal(err)
	}
}

func TestParseCRLsRefusals(t *testing.T) {
	a, b := testca.NewCA(t, td, testca.WithTime(t0)), testca.NewCA(t, td, testca.WithTime(t0))
	da, db := a.CreateCRL(testca.Revoked(big.NewInt(3))), b.CreateCRL()
	l, err := trust.ParseCRLs(da)
	if err != nil || len(l) != 1 || l[0].Len() != 1 {
		t.Fatalf("DER: %v %v", l, err)
	}
	l, err = trust.ParseCRLs(append(testca.CRLPEM(da), testca.CRLPEM(db)...))
	if err != nil || len(l) != 2 {
		t.Fatalf("PEM set: %v %v", l, err)
	}
	_, err = trust.ParseCRLs(append(testca.CRLPEM(da), testca.CRLPEM(da)...))
	assertErr(t, err, `trust: CRL set: two CRLs of issuer "`+td+` Test Intermediate CA"`, nil)
	_, err = trust.ParseCRLs(append(testca.CRLPEM(da), "junk"...))
	assertErr(t, err, "trust: CRL set: trailing bytes after the last PEM block", nil)
	_, err = trust.ParseCRLs(append(testca.CRLPEM(da), a.RootsPEM()...))
	assertErr(t, err, `trust: CRL: PEM block is "CERTIFICATE", want X509 CRL`, nil)
	var many []byte
	for range trust.MaxCRLsPerSet + 1 {
		many = append(many, testca.CRLPEM(testca.NewCA(t, td, testca.WithTime(t0)).CreateCRL())...)
	}
	_, err = trust.ParseCRLs(many)
	assertErr(t, err, "trust: CRL set: more than 16 CRLs", nil)
}

func mustBundle(t *testing.T, roots ...*x509.Certificate) *trust.Bundle {
	t.Helper()
	b, err := trust.NewBundle(roots)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
