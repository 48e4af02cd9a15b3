package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
)

func renew(t *testing.T, c *catest.CA, cert tls.Certificate) (tls.Certificate, error) {
	t.Helper()
	chain, err := c.Client.Renew(context.Background(), cert)
	if err != nil {
		return tls.Certificate{}, err
	}
	return catest.TLSCertificate(chain, cert.PrivateKey), nil
}

func mustRenew(t *testing.T, c *catest.CA, cert tls.Certificate) tls.Certificate {
	t.Helper()
	next, err := renew(t, c, cert)
	if err != nil {
		t.Fatal(err)
	}
	return next
}

func serialOf(cert tls.Certificate) string { return cert.Leaf.SerialNumber.String() }

// revokedSerials returns the decimal serials on the CA's current CRL.
func revokedSerials(t *testing.T, c *catest.CA) []string {
	t.Helper()
	der, err := c.Client.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range crl.RevokedCertificateEntries {
		out = append(out, e.SerialNumber.String())
	}
	return out
}

func operatorRevoke(t *testing.T, c *catest.CA, serial string, code int) {
	t.Helper()
	tok, err := ca.MintRevokeToken(c.Dir, c.Password, "", serial)
	if err != nil {
		t.Fatal(err)
	}
	status, body := postWithCert(t, c, "/1.0/revoke", tls.Certificate{},
		fmt.Sprintf(`{"serial":%q,"ott":%q,"reasonCode":%d,"reason":"test"}`, serial, tok, code))
	if status != http.StatusOK {
		t.Fatalf("revoke %s: %d %s", serial, status, body)
	}
}

// Revoking a certificate (key compromise) revokes every certificate renewed
// from it, directly or not, and they stop renewing; the renewal grace lets
// a holder that lost a renewal's answer ask again.
func TestRevokingACertificateRevokesItsRenewals(t *testing.T) {
	c, _ := startCA(t)
	a := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})
	b := mustRenew(t, c, a)
	a2 := mustRenew(t, c, a) // within the grace: the answer for b was "lost", b is replaced
	bb := mustRenew(t, c, a2)
	other := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})

	operatorRevoke(t, c, serialOf(a), 1) // keyCompromise
	got := revokedSerials(t, c)
	for _, s := range []tls.Certificate{a, b, a2, bb} {
		if !slices.Contains(got, serialOf(s)) {
			t.Errorf("serial %s (renewed from the revoked %s) is not on the CRL %v", serialOf(s), serialOf(a), got)
		}
	}
	if slices.Contains(got, serialOf(other)) {
		t.Errorf("serial %s, enrolled separately, was revoked too", serialOf(other))
	}
	for _, s := range []tls.Certificate{a2, bb} {
		_, err := renew(t, c, s)
		wantAPIError(t, err, http.StatusUnauthorized, "renew refused: certificate has been revoked")
	}
	if _, err := renew(t, c, b); err == nil {
		t.Errorf("the replaced and revoked %s renewed", serialOf(b))
	}
	mustRenew(t, c, other)
}

// The reason "superseded" says the certificate was replaced: its successors
// stay good.
func TestRevokingSupersededKeepsRenewals(t *testing.T) {
	c, _ := startCA(t)
	a := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})
	b := mustRenew(t, c, a)
	operatorRevoke(t, c, serialOf(a), 4) // superseded
	if got := revokedSerials(t, c); slices.Contains(got, serialOf(b)) || !slices.Contains(got, serialOf(a)) {
		t.Fatalf("CRL %v: want %s and not %s", got, serialOf(a), serialOf(b))
	}
	mustRenew(t, c, b)
}

// After the grace, only the newest certificate of a renewal chain renews:
// a copy of an old certificate cannot keep a chain of its own. Within it, a
// holder that lost the answer asks again, and the renewal it lost is
// replaced: one chain goes on, never two.
func TestSupersededCertificateNoLongerRenews(t *testing.T) {
	fk := clock.NewFake(time.Now())
	c := catest.Start(t, catest.Options{CAOptions: []ca.Option{ca.WithClock(fk)}})
	a := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})
	b := mustRenew(t, c, a)
	fk.Advance(ca.RenewalGrace - time.Second)
	a2 := mustRenew(t, c, a) // within the grace: b is replaced by a2
	_, err := renew(t, c, b)
	wantAPIError(t, err, http.StatusForbidden, fmt.Sprintf("ca: certificate %s was replaced by %s, a later renewal of the certificate it was renewed from: only one chain of renewals goes on; use that one, or enrol again with a new token", serialOf(b), serialOf(a2)))
	fk.Advance(2 * time.Second)
	_, err = renew(t, c, a)
	wantAPIError(t, err, http.StatusForbidden, fmt.Sprintf("ca: certificate %s was renewed at ", serialOf(a)))
	wantAPIError(t, err, http.StatusForbidden, "only the newest certificate renews; use it, or enrol again with a new token")
	_, err = c.Client.Rekey(context.Background(), a, mustCSR(t, mustKey(t)))
	wantAPIError(t, err, http.StatusForbidden, "only the newest certificate renews")
	a3 := mustRenew(t, c, a2)

	// renewalGrace in mcpca.json (reloaded) sets the window.
	writeSettings(t, c, func(s *ca.Settings) { s.RenewalGrace = ca.Duration{Duration: time.Minute} })
	cc := mustRenew(t, c, a3)
	fk.Advance(2 * time.Minute)
	_, err = renew(t, c, a3)
	wantAPIError(t, err, http.StatusForbidden, fmt.Sprintf("(newest serial %s): only the newest certificate renews", serialOf(cc)))

	// WithRenewalGrace(0): refused at once.
	c0 := catest.Start(t, catest.Options{CAOptions: []ca.Option{ca.WithRenewalGrace(0)}})
	a0 := c0.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})
	b0 := mustRenew(t, c0, a0)
	_, err = renew(t, c0, a0)
	wantAPIError(t, err, http.StatusForbidden, fmt.Sprintf("(newest serial %s): only the newest certificate renews", serialOf(b0)))
}

// /rekey applies the key policy of /sign.
func TestRekeyRefusesWeakKeys(t *testing.T) {
	c, _ := startCA(t)
	a := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  any
		msg  string
	}{
		{"RSA-1024", rsa1024, "ca: certificate request: identity: RSA-1024 key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits"},
		{"P-224", p224, "ca: certificate request: identity: ECDSA P-224 key: key not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := x509.ParseCertificateRequest(der)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Client.Rekey(context.Background(), a, csr)
			wantAPIError(t, err, http.StatusBadRequest, tc.msg)
		})
	}
	if _, err := c.Client.Rekey(context.Background(), a, mustCSR(t, mustKey(t))); err != nil {
		t.Fatal(err)
	}
}

// writeSettings rewrites the CA's mcpca.json with edit applied.
func writeSettings(t *testing.T, c *catest.CA, edit func(*ca.Settings)) {
	t.Helper()
	s, err := ca.LoadSettings(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	edit(s)
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca.Layout{Dir: c.Dir}.SettingsFile(), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Server.Reload(); err != nil {
		t.Fatal(err)
	}
}

// Renewal re-checks the issuing provisioner's current limits: narrowed or
// removed, its certificates stop renewing, with a message that says to
// enrol again.
func TestRenewalRechecksProvisionerLimits(t *testing.T) {
	c, _ := startCA(t)
	addTeamA(t, c.Server, c.Dir, c.Password)
	tok := ca.MintRawTokenForTest(t, c.Dir, c.Password, "team-a", &ca.Claims{Kind: "client", Name: "team-a-bot", Roles: []string{"reader"}})
	cert, err := c.EnrollToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	cert = mustRenew(t, c, cert)

	writeSettings(t, c, func(s *ca.Settings) { s.Provisioners["team-a"].AllowRoles = nil })
	_, err = renew(t, c, cert)
	wantAPIError(t, err, http.StatusForbidden, fmt.Sprintf(`ca: certificate %s no longer fits the limits of provisioner "team-a" (provisioner "team-a" may not grant role "reader" (allowed: none)): enrol again with a token that fits them`, serialOf(cert)))
	_, err = c.Client.Rekey(context.Background(), cert, mustCSR(t, mustKey(t)))
	wantAPIError(t, err, http.StatusForbidden, "no longer fits the limits of provisioner")

	writeSettings(t, c, func(s *ca.Settings) { s.Provisioners["team-a"].AllowRoles = []string{"reader"} })
	cert = mustRenew(t, c, cert)

	writeSettings(t, c, func(s *ca.Settings) { s.Provisioners["team-a"].AllowNames = []string{"client/team-b-*"} })
	_, err = renew(t, c, cert)
	wantAPIError(t, err, http.StatusForbidden, `may not issue for name "client/team-a-bot" (allowed: client/team-b-*)`)

	writeSettings(t, c, func(s *ca.Settings) { delete(s.Provisioners, "team-a") })
	_, err = renew(t, c, cert)
	wantAPIError(t, err, http.StatusForbidden, fmt.Sprintf(`ca: provisioner "team-a", which issued certificate %s, has no mcpca policy in %s any more: enrol again with a token of a current provisioner`, serialOf(cert), ca.Layout{Dir: c.Dir}.SettingsFile()))

	// Removed from step-ca's configuration as well: gone.
	editStepConfig(t, c, func(provs []any) []any {
		return slices.DeleteFunc(provs, func(p any) bool { return p.(map[string]any)["name"] == "team-a" })
	})
	_, err = renew(t, c, cert)
	wantAPIError(t, err, http.StatusForbidden, fmt.Sprintf("ca: the provisioner that issued certificate %s no longer exists: enrol again with a token of a current provisioner", serialOf(cert)))
}

// editStepConfig rewrites the provisioners of the CA's config/ca.json with
// edit applied, and reloads.
func editStepConfig(t *testing.T, c *catest.CA, edit func([]any) []any) {
	t.Helper()
	path := ca.Layout{Dir: c.Dir}.StepConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	auth := cfg["authority"].(map[string]any)
	auth["provisioners"] = edit(auth["provisioners"].([]any))
	if b, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Server.Reload(); err != nil {
		t.Fatal(err)
	}
}

// A certificate whose key the key policy refuses does not renew, whenever
// it was issued.
func TestRenewRefusesWeakKeys(t *testing.T) {
	c, _ := startCA(t)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://acme.test/client/old")
	weak := signLeaf(t, c, &x509.Certificate{
		SerialNumber: big.NewInt(515151), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, rsa1024)
	status, msg := postWithCert(t, c, "/1.0/renew", weak, "{}")
	if status != http.StatusForbidden || !strings.HasPrefix(msg, "ca: certificate 515151: ") ||
		!strings.HasSuffix(msg, "RSA-1024 key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits: enrol again with a new key") {
		t.Fatalf("renewing an RSA-1024 certificate: %d %q", status, msg)
	}
}

func revokeIdentity(t *testing.T, c *catest.CA, prov string, id string) ([]string, error) {
	t.Helper()
	tok, err := ca.MintRevokeToken(c.Dir, c.Password, prov, id)
	if err != nil {
		t.Fatal(err)
	}
	return c.Client.RevokeIdentity(context.Background(), id, tok, "compromised host")
}

// `mcpca revoke --identity`: every unexpired certificate of the identity
// is revoked at once and none renews; tokens minted before the revocation
// are refused; a new token brings the identity back; other identities are
// untouched; a restricted provisioner revokes only within its names.
func TestRevokeIdentity(t *testing.T) {
	c, logs := startCA(t)
	const id = "spiffe://acme.test/client/reporter"
	req := ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour}
	a := c.Enroll(req)
	b := mustRenew(t, c, a)
	d := c.Enroll(req)
	early := c.Token(req) // minted before the revocation, not used yet
	other := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "writer", TTL: time.Hour})

	serials, err := revokeIdentity(t, c, "", id)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{serialOf(a), serialOf(b), serialOf(d)}
	slices.Sort(serials)
	slices.Sort(want)
	if !slices.Equal(serials, want) {
		t.Fatalf("revoked %v, want %v", serials, want)
	}
	crl := revokedSerials(t, c)
	for _, s := range want {
		if !slices.Contains(crl, s) {
			t.Errorf("serial %s is not on the CRL %v", s, crl)
		}
	}
	for _, cert := range []tls.Certificate{a, b, d} {
		_, err := renew(t, c, cert)
		wantAPIError(t, err, http.StatusUnauthorized, "certificate has been revoked")
	}
	mustRenew(t, c, other)
	if !strings.Contains(logs.String(), `"msg":"identity revoked"`) || !strings.Contains(logs.String(), `"identity":"`+id+`"`) {
		t.Errorf("the CA log does not record the identity revocation:\n%s", logs.String())
	}

	_, err = c.EnrollToken(early)
	wantAPIError(t, err, http.StatusForbidden, "ca: identity "+id+" was revoked at ")
	wantAPIError(t, err, http.StatusForbidden, ", after this token was minted: mint a new token to enrol it again")

	// A token minted after the revocation (its iat in a later second)
	// enrols the identity again.
	back, err := c.EnrollToken(c.Token(req, ca.WithClock(clock.NewFake(time.Now().Add(2*time.Second)))))
	if err != nil {
		t.Fatal(err)
	}
	mustRenew(t, c, back)
}

func TestRevokeIdentityRefusals(t *testing.T) {
	c, _ := startCA(t)
	addTeamA(t, c.Server, c.Dir, c.Password)
	ceo := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "ceo", TTL: time.Hour})

	// A restricted provisioner: only its names, refused before the token is
	// spent.
	tok, err := ca.MintRevokeToken(c.Dir, c.Password, "team-a", "spiffe://acme.test/client/ceo")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.RevokeIdentity(context.Background(), "spiffe://acme.test/client/ceo", tok, "")
	wantAPIError(t, err, http.StatusForbidden, `ca: provisioner "team-a" may not revoke spiffe://acme.test/client/ceo (allowed names: client/team-a-*, server/team-a-*)`)
	mustRenew(t, c, ceo)
	if serials, err := revokeIdentity(t, c, "team-a", "spiffe://acme.test/client/team-a-bot"); err != nil || len(serials) != 0 {
		t.Fatalf("team-a revoking its own name: %v %v", serials, err)
	}

	// The token's subject must be the identity revoked.
	tok, err = ca.MintRevokeToken(c.Dir, c.Password, "", "spiffe://acme.test/client/intern")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.RevokeIdentity(context.Background(), "spiffe://acme.test/client/ceo", tok, "")
	wantAPIError(t, err, http.StatusForbidden, `ca: the token's subject "spiffe://acme.test/client/intern" is not the identity spiffe://acme.test/client/ceo being revoked`)

	for _, tc := range []struct{ body, msg string }{
		{`{"identity":"spiffe://acme.test/client/ceo","serial":"12","ott":"x"}`, "ca: give either a serial or an identity to revoke, not both"},
		{`{"identity":"spiffe://other.test/client/ceo","ott":"x"}`, `ca: identity spiffe://other.test/client/ceo is not in this CA's trust domain "acme.test"`},
		{`{"identity":"spiffe://acme.test/client/ceo"}`, "ca: revoking an identity needs an operator token whose subject is the identity (mcpca revoke --identity)"},
		{`{"identity":"https://acme.test/client/ceo","ott":"x"}`, `ca: identity to revoke "https://acme.test/client/ceo" is not a SPIFFE ID (spiffe://TRUST-DOMAIN/client|server/NAME)`},
	} {
		status, body := postWithCert(t, c, "/1.0/revoke", tls.Certificate{}, tc.body)
		if status/100 != 4 || !strings.Contains(body, tc.msg) {
			t.Errorf("%s: got %d %s, want a refusal containing %q", tc.body, status, body, tc.msg)
		}
	}
	mustRenew(t, c, ceo)
}
