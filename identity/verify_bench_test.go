package identity_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/testca"
)

// benchSVID is a realistic client leaf: three roles, three attributes.
func benchSVID(b *testing.B, ca *testca.CA) *testca.SVID {
	return ca.CreateSVID(alice,
		testca.WithRoles("reader", "writer", "search.admin"),
		testca.WithAttributes(map[string]string{"team": "search", "env": "prod", "region": "eu-west-1"}))
}

func BenchmarkFromCertificate(b *testing.B) {
	ca := testca.NewCA(b, td)
	leaf := benchSVID(b, ca).Leaf
	b.ReportAllocs()
	for b.Loop() {
		if _, err := identity.FromCertificate(leaf); err != nil {
			b.Fatal(err)
		}
	}
}

// bareVerify is the anchor: what crypto/tls itself does per handshake, a
// pool of the presented intermediates and x509.Certificate.Verify.
func bareVerify(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err
}

// BenchmarkVerify runs the anchor and the Verifier's paths on one chain
// (root -> intermediate -> leaf, ECDSA P-256), side by side.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b) // with a CRL
	s := benchSVID(b, e.ca)
	roots := e.ca.Roots()
	noCache, err := identity.NewVerifier(e.bundle, identity.WithTrustDomains(td), identity.WithClock(e.clk), identity.WithCRL(e.crl), identity.WithCacheSize(0))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("x509-bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := bareVerify(s.Chain, roots, t0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := noCache.Verify(s.Chain, identity.KindClient); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.v.Verify(s.Chain, identity.KindClient); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerifyRatio interleaves the anchor and the uncached Verifier in
// every iteration, so both see the same machine state, and reports each
// one's time and their ratio (goal: ratio <= 1.15).
func BenchmarkVerifyRatio(b *testing.B) {
	e := newEnv(b)
	s := benchSVID(b, e.ca)
	roots := e.ca.Roots()
	noCache, err := identity.NewVerifier(e.bundle, identity.WithTrustDomains(td), identity.WithClock(e.clk), identity.WithCRL(e.crl), identity.WithCacheSize(0))
	if err != nil {
		b.Fatal(err)
	}
	var bare, ours time.Duration
	for b.Loop() {
		t1 := time.Now()
		if err := bareVerify(s.Chain, roots, t0); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := noCache.Verify(s.Chain, identity.KindClient); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		bare += t2.Sub(t1)
		ours += t3.Sub(t2)
	}
	b.ReportMetric(float64(bare.Nanoseconds())/float64(b.N), "x509-ns/op")
	b.ReportMetric(float64(ours.Nanoseconds())/float64(b.N), "verifier-ns/op")
	b.ReportMetric(float64(ours)/float64(bare), "ratio")
}
