package ca_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/caclient"
	"github.com/mcpca/mcpca/internal/pemfile"
)

// startRotatingCA serves a CA on the fake clock fk.
func startRotatingCA(t *testing.T, fk *clock.Fake, maxTTL time.Duration) *catest.CA {
	t.Helper()
	return catest.Start(t, catest.Options{MaxTTL: maxTTL, CAOptions: []ca.Option{ca.WithClock(fk)}})
}

// bundleClient is a CA client trusting roots.
func bundleClient(t *testing.T, c *catest.CA, roots []*x509.Certificate) *caclient.Client {
	t.Helper()
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	cl, err := caclient.New(c.URL, pool)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// verifies checks that chain[0] verifies, for client auth, against roots
// with chain[1:] as intermediates, and returns the intermediate's name.
func verifies(t *testing.T, chain []*x509.Certificate, roots []*x509.Certificate) string {
	t.Helper()
	pool, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	for _, c := range chain[1:] {
		inters.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the chain of %s does not verify against the bundle: %v", chain[0].SerialNumber, err)
	}
	return chain[0].Issuer.CommonName
}

// crlSet fetches /crl as the verifier's CRLFetcher does.
func crlSet(t *testing.T, c *catest.CA, roots []*x509.Certificate) []*trust.CRL {
	t.Helper()
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, c.URL+"/1.0/crl", nil)
	req.Header.Set("Accept", trust.CRLSetMediaType)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != trust.CRLSetMediaType {
		t.Fatalf("GET /crl (set): %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	l, err := trust.ParseCRLs(b)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func roots(t *testing.T, cl *caclient.Client) []*x509.Certificate {
	t.Helper()
	r, err := cl.Roots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func subjects(l []ca.CAGeneration) []string {
	var out []string
	for _, g := range l {
		s := g.Subject
		if g.Issuing {
			s += " (issuing)"
		}
		out = append(out, s)
	}
	return out
}

// Rotating the intermediate: the new one issues at once, a certificate of
// the old one renews onto it, the old one stays trusted (peer checks, the
// CRL set) until it is retired, and a revoked certificate of the old one
// stays refused.
func TestRotateIntermediateRenewsAcrossGenerations(t *testing.T) {
	fk := clock.NewFake(time.Now())
	c := startRotatingCA(t, fk, time.Hour)
	old := c.Enroll(ca.TokenRequest{Kind: "client", Name: "old"})
	revoked := c.Enroll(ca.TokenRequest{Kind: "client", Name: "revoked"})
	g1 := old.Leaf.Issuer.CommonName

	if _, err := ca.RotateIntermediate(c.Dir, c.Password, ca.WithClock(fk), ca.WithSwitchAfter(time.Minute)); err == nil ||
		!strings.Contains(err.Error(), "rotate intermediate: --switch-after 1m0s is shorter than 10m0s, twice the verifiers' CRL refresh (5m)") {
		t.Fatalf("short switch without --force: %v", err)
	}
	st, err := ca.RotateIntermediate(c.Dir, c.Password, ca.WithClock(fk), ca.WithSwitchAfter(0), ca.WithForce())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(subjects(st.Intermediates), ", "); got != g1+", "+g1+" G2 (issuing)" {
		t.Fatalf("intermediates after the rotation: %s", got)
	}
	if want := fk.Now().Truncate(time.Second).Add(time.Hour); !st.Intermediates[0].RetireAfter.Equal(want) {
		t.Fatalf("generation 1 retires after %s, want %s (the overlap defaults to the max TTL)", st.Intermediates[0].RetireAfter, want)
	}
	if err := c.Server.Reload(); err != nil {
		t.Fatal(err)
	}
	bundle := roots(t, c.Client)
	if len(bundle) != 1 {
		t.Fatalf("/roots: %d roots, want the one root", len(bundle))
	}

	// The old generation's certificate renews onto the new one.
	chain, err := c.Client.Renew(context.Background(), old)
	if err != nil {
		t.Fatal(err)
	}
	if got := verifies(t, chain, bundle); got != g1+" G2" {
		t.Fatalf("renewed by %q, want %q", got, g1+" G2")
	}
	renewed := catest.TLSCertificate(chain, old.PrivateKey)
	if _, err := c.Client.Renew(context.Background(), renewed); err != nil {
		t.Fatalf("renewing the new generation's certificate: %v", err)
	}
	if fresh := c.Enroll(ca.TokenRequest{Kind: "client", Name: "fresh"}); fresh.Leaf.Issuer.CommonName != g1+" G2" {
		t.Fatalf("enrolled by %q", fresh.Leaf.Issuer.CommonName)
	}

	// Revoking a certificate of the old generation: it cannot renew, and
	// the old generation's CRL in the set lists it.
	operatorRevoke(t, c, serialOf(revoked), 1)
	if _, err := c.Client.Renew(context.Background(), revoked); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("renewing a revoked certificate of the old intermediate: %v", err)
	}
	set := crlSet(t, c, bundle)
	if len(set) != 2 {
		t.Fatalf("CRL set of %d CRLs, want one per intermediate (2)", len(set))
	}
	byIssuer := map[string]*trust.CRL{}
	for _, l := range set {
		byIssuer[l.RevocationList().Issuer.CommonName] = l
	}
	oldCRL := byIssuer[g1]
	if oldCRL == nil || byIssuer[g1+" G2"] == nil {
		t.Fatalf("CRL set issuers: %v", byIssuer)
	}
	if err := oldCRL.CheckSignatureFrom(issuerOf(t, revoked)); err != nil {
		t.Fatalf("the old generation's CRL is not signed by it: %v", err)
	}
	if _, ok := oldCRL.Revoked(revoked.Leaf.SerialNumber); !ok {
		t.Fatal("the old generation's CRL does not list its revoked certificate")
	}
	if oldCRL.Number().Cmp(byIssuer[g1+" G2"].Number()) != 0 {
		t.Fatalf("CRL numbers differ: %s and %s", oldCRL.Number(), byIssuer[g1+" G2"].Number())
	}
	// Without the header, /crl is the issuing intermediate's DER, as before.
	der, err := c.Client.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l, err := x509.ParseRevocationList(der); err != nil || l.Issuer.CommonName != g1+" G2" {
		t.Fatalf("GET /crl: %v %v", l.Issuer.CommonName, err)
	}

	// A second rotation waits for nothing, but retiring before the time is
	// refused with the time it can happen.
	if _, err := ca.Retire(c.Dir, c.Password, ca.WithClock(fk)); err == nil ||
		!strings.Contains(err.Error(), "nothing to retire yet: intermediate generation 1 can be retired after") {
		t.Fatalf("early retire: %v", err)
	}
	fk.Advance(time.Hour + time.Minute)
	gone, err := ca.Retire(c.Dir, c.Password, ca.WithClock(fk))
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 1 || gone[0].Subject != g1 {
		t.Fatalf("retired %v", gone)
	}
	if err := c.Server.Reload(); err != nil {
		t.Fatal(err)
	}
	if set := crlSet(t, c, bundle); len(set) != 1 {
		t.Fatalf("after retiring, the CRL set has %d CRLs", len(set))
	}
	if _, err := ca.Retire(c.Dir, c.Password, ca.WithClock(fk)); err == nil || !strings.Contains(err.Error(), "nothing to retire: the CA holds one root and one intermediate") {
		t.Fatalf("retire with nothing left: %v", err)
	}
}

// Rotating the root: the new root is published at once, the old
// intermediate keeps issuing until the switch comes on the CA's clock
// (no reload), then certificates renew onto the new root's intermediate,
// whose chain the bundle fetched before verifies.
func TestRotateRootSwitchesOnTheClock(t *testing.T) {
	fk := clock.NewFake(time.Now())
	c := startRotatingCA(t, fk, 24*time.Hour)
	cert := c.Enroll(ca.TokenRequest{Kind: "client", Name: "a"})
	other := c.Enroll(ca.TokenRequest{Kind: "client", Name: "b"})
	oldRoot := c.Root

	if _, err := ca.RotateRoot(c.Dir, c.Password, ca.WithClock(fk), ca.WithSwitchAfter(time.Hour)); err == nil ||
		!strings.Contains(err.Error(), "--switch-after 1h0m0s is shorter than 2h0m0s") {
		t.Fatalf("short switch without --force: %v", err)
	}
	st, err := ca.RotateRoot(c.Dir, c.Password, ca.WithClock(fk))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Roots) != 2 || st.Roots[1].Subject != "Test MCP CA Root CA G2" || !st.NextSwitch.Equal(st.Intermediates[1].IssuesFrom) {
		t.Fatalf("status after rotate root: %+v", st)
	}
	if _, err := os.Stat(c.Dir + "/secrets/root_ca_key.g2"); err != nil {
		t.Fatalf("the new root's key: %v", err)
	}
	if _, err := ca.RotateIntermediate(c.Dir, c.Password, ca.WithClock(fk)); err == nil || !strings.Contains(err.Error(), "a rotation is under way: intermediate generation 2 issues from") {
		t.Fatalf("rotating during a rotation: %v", err)
	}
	if err := c.Server.Reload(); err != nil {
		t.Fatal(err)
	}
	bundle := roots(t, c.Client)
	if len(bundle) != 2 {
		t.Fatalf("/roots: %d roots, want both", len(bundle))
	}
	// The pending intermediate's CRL is in the set before it issues.
	if set := crlSet(t, c, bundle); len(set) != 2 || set[1].RevocationList().Issuer.CommonName != "Test MCP CA Intermediate CA G2" {
		t.Fatalf("CRL set before the switch: %d CRLs", len(set))
	}
	b, err := os.ReadFile(c.Dir + "/certs/root_ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	if l, err := pemfile.ParseCertificates(b, pemfile.RefuseOthers); err != nil || len(l) != 2 {
		t.Fatalf("certs/root_ca.crt: %d roots, %v", len(l), err)
	}
	// Before the switch the old intermediate issues.
	chain, err := c.Client.Renew(context.Background(), cert)
	if err != nil {
		t.Fatal(err)
	}
	if got := verifies(t, chain, []*x509.Certificate{oldRoot}); got != "Test MCP CA Intermediate CA" {
		t.Fatalf("before the switch, issued by %q", got)
	}
	cert = catest.TLSCertificate(chain, cert.PrivateKey)

	// The switch, on the CA's clock.
	fk.Advance(ca.DefaultSwitchAfter)
	deadline := time.Now().Add(20 * time.Second)
	for c.Server.Authority().GetIntermediateCertificates()[0].Subject.CommonName != "Test MCP CA Intermediate CA G2" {
		if time.Now().After(deadline) {
			t.Fatal("the CA did not switch to the new intermediate")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The CA's TLS certificate now chains to the new root: a client
	// holding the bundle fetched before the switch reaches it.
	cl := bundleClient(t, c, bundle)
	chain, err = cl.Renew(context.Background(), cert)
	if err != nil {
		t.Fatal(err)
	}
	if got := verifies(t, chain, bundle); got != "Test MCP CA Intermediate CA G2" {
		t.Fatalf("after the switch, issued by %q", got)
	}
	if err := chain[1].CheckSignatureFrom(oldRoot); err == nil {
		t.Fatal("the new intermediate is signed by the old root")
	}
	if _, err := ca.Retire(c.Dir, c.Password, ca.WithClock(fk)); err == nil || !strings.Contains(err.Error(), "nothing to retire yet") {
		t.Fatalf("early retire: %v", err)
	}
	// --force retires the old root and intermediate at once (a compromise).
	gone, err := ca.Retire(c.Dir, c.Password, ca.WithClock(fk), ca.WithForce())
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 2 {
		t.Fatalf("retired %v", gone)
	}
	if err := c.Server.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := roots(t, cl); len(r) != 1 || r[0].Subject.CommonName != "Test MCP CA Root CA G2" {
		t.Fatalf("/roots after retire: %v", r)
	}
	// A certificate of the retired generation no longer renews.
	if _, err := cl.Renew(context.Background(), other); err == nil || !strings.Contains(err.Error(), "is not issued by this CA") {
		t.Fatalf("renewing a certificate of the retired generation: %v", err)
	}
}

// issuerOf returns the intermediate in a TLS certificate's chain.
func issuerOf(t *testing.T, c tls.Certificate) *x509.Certificate {
	t.Helper()
	i, err := x509.ParseCertificate(c.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestDefaultSwitchAfterCoversTheAgentsBundleRefresh(t *testing.T) {
	if ca.DefaultSwitchAfter < 2*agent.DefaultBundleInterval {
		t.Fatalf("DefaultSwitchAfter %s < 2 x agent.DefaultBundleInterval %s", ca.DefaultSwitchAfter, agent.DefaultBundleInterval)
	}
}
