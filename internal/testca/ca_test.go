package testca_test

import (
	"crypto/x509"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/testca"
)

func TestSVIDVerifies(t *testing.T) {
	ca := testca.NewCA(t, "example.org")
	for _, tc := range []struct {
		id  string
		eku x509.ExtKeyUsage
	}{
		{"spiffe://example.org/client/alice", x509.ExtKeyUsageClientAuth},
		{"spiffe://example.org/server/files", x509.ExtKeyUsageServerAuth},
		{"spiffe://example.org/server/files", x509.ExtKeyUsageClientAuth},
	} {
		s := ca.CreateSVID(tc.id, testca.WithRoles("reader"), testca.WithAttributes(map[string]string{"team": "a"}))
		if _, err := s.Leaf.Verify(x509.VerifyOptions{Roots: ca.Roots(), Intermediates: ca.IntermediatesPool(), KeyUsages: []x509.ExtKeyUsage{tc.eku}}); err != nil {
			t.Fatalf("%s: %v", tc.id, err)
		}
		id, err := identity.FromCertificate(s.Leaf)
		if err != nil {
			t.Fatal(err)
		}
		if id.ID.String() != tc.id || !id.HasRole("reader") || id.Attributes["team"] != "a" {
			t.Fatalf("got %+v", id)
		}
		if len(s.Chain) != 2 || len(s.TLS.Certificate) != 2 || s.TLS.PrivateKey == nil {
			t.Fatalf("chain %d", len(s.Chain))
		}
	}
}

func TestGoSPIFFEAcceptsSVIDs(t *testing.T) {
	ca := testca.NewCA(t, "example.org")
	td := spiffeid.RequireTrustDomainFromString("example.org")
	b := x509bundle.FromX509Authorities(td, []*x509.Certificate{ca.Root()})
	for _, id := range []any{"spiffe://example.org/client/alice", identity.ID{TrustDomain: "example.org", Kind: identity.KindServer, Name: "files"}} {
		s := ca.CreateSVID(id, testca.WithRoles("admin", "reader"), testca.WithDNSNames("files.example.org"))
		got, _, err := x509svid.Verify(s.Chain, b)
		if err != nil {
			t.Fatalf("x509svid.Verify: %v", err)
		}
		if _, err := x509svid.ParseRaw(s.Leaf.Raw, testca.KeyDER(t, s.Key)); err != nil {
			t.Fatal(err)
		}
		t.Logf("go-spiffe accepted %s", got)
	}
}

func TestChildCAAndCRL(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ca := testca.NewCA(t, "example.org", testca.WithTime(now))
	child := ca.ChildCA()
	s := child.CreateSVID(&url.URL{Scheme: "spiffe", Host: "example.org", Path: "/client/bob"})
	if len(s.Chain) != 3 || child.Root() != ca.Root() {
		t.Fatalf("chain %d", len(s.Chain))
	}
	if _, err := s.Leaf.Verify(x509.VerifyOptions{Roots: ca.Roots(), Intermediates: child.IntermediatesPool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	der := child.CreateCRL(testca.RevokedCerts(s.Leaf), testca.NextUpdate(now.Add(time.Minute)))
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(child.Cert); err != nil {
		t.Fatal(err)
	}
	if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(s.Leaf.SerialNumber) != 0 || !crl.NextUpdate.Equal(now.Add(time.Minute)) {
		t.Fatalf("crl %+v", crl)
	}
}

func TestMutators(t *testing.T) {
	ca := testca.NewCA(t, "example.org")
	s := ca.CreateSVID("spiffe://example.org/client/x",
		testca.WithIsCA(), testca.WithURIs("spiffe://example.org/client/y"),
		testca.WithKeyUsage(x509.KeyUsageCertSign), testca.WithUnknownCriticalExtension(),
		testca.WithRawRoles([]byte{1, 2, 3}))
	if !s.Leaf.IsCA || len(s.Leaf.URIs) != 2 || s.Leaf.KeyUsage != x509.KeyUsageCertSign || len(s.Leaf.UnhandledCriticalExtensions) != 1 {
		t.Fatalf("mutators not applied: %+v", s.Leaf)
	}
}
