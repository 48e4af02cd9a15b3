package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/testca"
)

// Every refusal carries a Reason a program can switch on, and the ID of
// the peer when its certificate parsed; the message is the one users read.
func TestVerifyErrorReasons(t *testing.T) {
	e := newEnv(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	revoked := e.ca.CreateSVID(alice)
	e.crl.Set(mustCRL(t, e.ca.CreateCRL(testca.RevokedCerts(revoked.Leaf))))
	other := testca.NewCA(t, "other.org", testca.WithTime(t0))
	stranger := testca.NewCA(t, td, testca.WithTime(t0))
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		as    identity.Kind
		want  identity.Reason
		id    string
	}{
		{"empty", nil, identity.KindClient, identity.ReasonMalformedChain, ""},
		{"not an SVID", e.ca.CreateSVID(alice, testca.WithURIs("https://example.org/x")).Chain, identity.KindClient, identity.ReasonNotSVID, ""},
		{"bad roles", e.ca.CreateSVID(alice, testca.WithRawRoles([]byte{0x30, 0x03, 0x0c})).Chain, identity.KindClient, identity.ReasonBadExtension, ""},
		{"trust domain", other.CreateSVID("spiffe://other.org/client/alice").Chain, identity.KindClient, identity.ReasonTrustDomain, "spiffe://other.org/client/alice"},
		{"weak key", e.ca.CreateSVID(alice, testca.WithPublicKey(&p224.PublicKey)).Chain, identity.KindClient, identity.ReasonWeakKey, alice},
		{"client as server", e.ca.CreateSVID(alice).Chain, identity.KindServer, identity.ReasonWrongUsage, alice},
		{"critical extension", e.ca.CreateSVID(alice, testca.WithUnknownCriticalExtension()).Chain, identity.KindClient, identity.ReasonBadExtension, alice},
		{"not yet valid", e.ca.CreateSVID(alice, testca.WithValidity(t0.Add(time.Hour), t0.Add(2*time.Hour))).Chain, identity.KindClient, identity.ReasonNotYetValid, alice},
		{"expired", e.ca.CreateSVID(alice, testca.WithValidity(t0.Add(-2*time.Hour), t0.Add(-time.Hour))).Chain, identity.KindClient, identity.ReasonExpired, alice},
		{"untrusted", stranger.CreateSVID(alice).Chain, identity.KindClient, identity.ReasonUntrusted, alice},
		{"revoked", revoked.Chain, identity.KindClient, identity.ReasonRevoked, alice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.v.Verify(tc.chain, tc.as)
			var ve *identity.VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v (%T) is not a *VerifyError", err, err)
			}
			if ve.Reason != tc.want || identity.ReasonOf(err) != tc.want {
				t.Fatalf("reason %q, want %q (%v)", ve.Reason, tc.want, err)
			}
			if got := ve.ID.String(); tc.id != "" && got != tc.id {
				t.Fatalf("ID %q, want %q", got, tc.id)
			}
			if ve.Error() != err.Error() || ve.Error()[:len("identity: ")] != "identity: " {
				t.Fatalf("message %q", ve.Error())
			}
		})
	}
	if identity.ReasonOf(errors.New("other")) != "" {
		t.Fatal("ReasonOf of a foreign error is not empty")
	}
	_, err = e.v.Verify(e.ca.CreateSVID(alice, testca.WithPublicKey(&p224.PublicKey)).Chain, identity.KindClient)
	if !errors.Is(err, identity.ErrWeakKey) {
		t.Fatalf("a weak key's refusal does not wrap ErrWeakKey: %v", err)
	}
}
