package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	stepapi "github.com/smallstep/certificates/api"
	stepca "github.com/smallstep/certificates/ca"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
)

// TestSmallstepClientWorksAgainstMcpca shows wire compatibility: smallstep's
// own Go client (the one the step CLI uses) enrols, renews and reads health
// and roots from an mcpca CA.
func TestSmallstepClientWorksAgainstMcpca(t *testing.T) {
	c, _ := startCA(t)
	cl, err := stepca.NewClient(c.URL, stepca.WithRootFile(ca.Layout{Dir: c.Dir}.RootCert()))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := cl.Health(); err != nil || h.Status != "ok" {
		t.Fatalf("health: %v %+v", err, h)
	}
	tok := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "stepper", Roles: []string{"reader"}, TTL: time.Hour})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := catest.CSRForToken(tok, key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Sign(&stepapi.SignRequest{CsrPEM: stepapi.CertificateRequest{CertificateRequest: csr}, OTT: tok})
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromCertificate(resp.ServerPEM.Certificate)
	if err != nil || id.ID.String() != "spiffe://acme.test/client/stepper" || !id.HasRole("reader") {
		t.Fatalf("identity %+v, %v", id, err)
	}
	cert := tls.Certificate{Certificate: [][]byte{resp.ServerPEM.Raw, resp.CaPEM.Raw}, PrivateKey: key, Leaf: resp.ServerPEM.Certificate}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Roots, Certificates: []tls.Certificate{cert}}}
	renewed, err := cl.Renew(tr)
	if err != nil {
		t.Fatal(err)
	}
	rid, err := identity.FromCertificate(renewed.ServerPEM.Certificate)
	if err != nil || rid.ID != id.ID || !rid.HasRole("reader") || rid.Serial.Cmp(id.Serial) == 0 {
		t.Fatalf("renewed %+v, %v", rid, err)
	}
}
