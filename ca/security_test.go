package ca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
)

// A token in JWS JSON form whose unsigned header hides a second payload
// must not let the reader take the hidden payload for the signed one.
func TestJSONFormTokenIsRefused(t *testing.T) {
	c, _ := startCA(t)
	tok := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "bob", Roles: []string{"reader"}})
	parts := strings.Split(tok, ".")
	fake, _ := json.Marshal(map[string]any{"iss": "admin", "sub": "spiffe://acme.test/client/bob", "sans": []string{"spiffe://acme.test/client/bob"},
		"mcpca": map[string]any{"kind": "client", "name": "bob", "roles": []string{"admin", "reader"}}})
	smuggled, _ := json.Marshal(map[string]any{
		"protected": parts[0],
		"header":    map[string]string{"x": "a." + base64.RawURLEncoding.EncodeToString(fake) + ".b"},
		"payload":   parts[1],
		"signature": parts[2],
	})
	_, err := c.EnrollToken(string(smuggled))
	if err == nil {
		t.Fatal("a JSON-form token was accepted")
	}
	// The client refuses to build a CSR from it; send it to the CA directly.
	key := mustKey(t)
	csr := mustCSR(t, key, "spiffe://acme.test/client/bob")
	_, err = c.Client.Sign(context.Background(), csr, string(smuggled))
	wantAPIError(t, err, 400, "the token is not a compact JWS (three base64url parts separated by dots)")
	// The real token was not spent by the refusal.
	cert, err := c.EnrollToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id := c.Identity(cert); len(id.Roles) != 1 || id.Roles[0] != "reader" {
		t.Fatalf("roles %v", id.Roles)
	}
}

func addTeamA(t *testing.T, c interface {
	Reload() error
}, dir string, pw []byte) {
	t.Helper()
	if _, err := ca.AddProvisioner(dir, pw, "team-a", ca.ProvisionerPolicy{
		AllowRoles: []string{"reader"}, AllowNames: []string{"client/team-a-*", "server/team-a-*"},
		AllowDNS: []string{"*.team-a.acme.test"}, AllowIPs: []string{"10.1.0.0/16"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
}

func TestRestrictedProvisionerSANsAreLimited(t *testing.T) {
	c, _ := startCA(t)
	addTeamA(t, c.Server, c.Dir, c.Password)
	srv := &ca.Claims{Kind: "server", Name: "team-a-web"}
	// Within the limits.
	if _, err := c.EnrollToken(ca.MintRawTokenForTest(t, c.Dir, c.Password, "team-a", srv, "web.team-a.acme.test", "10.1.2.3")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		san, msg string
	}{
		{"login.bank.example", `provisioner "team-a" may not issue for DNS name "login.bank.example" (allowed: *.team-a.acme.test)`},
		{"*.corp.example", `provisioner "team-a" may not issue for DNS name "*.corp.example"`},
		{"192.168.1.1", `provisioner "team-a" may not issue for IP address 192.168.1.1 (allowed: 10.1.0.0/16)`},
	}
	for _, tc := range cases {
		_, err := c.EnrollToken(ca.MintRawTokenForTest(t, c.Dir, c.Password, "team-a", srv, tc.san))
		wantAPIError(t, err, 403, tc.msg)
	}
	// The minting side refuses too.
	_, err := ca.MintToken(c.Dir, c.Password, ca.TokenRequest{Kind: identity.KindServer, Name: "team-a-web", DNSNames: []string{"evil.example"}, Provisioner: "team-a"})
	if err == nil || !strings.Contains(err.Error(), `may not issue for DNS name "evil.example"`) {
		t.Fatalf("mint: %v", err)
	}
}

func TestRestrictedProvisionerRevokesOnlyItsNames(t *testing.T) {
	c, _ := startCA(t)
	addTeamA(t, c.Server, c.Dir, c.Password)
	admin := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "ops-admin", Roles: []string{"admin"}})
	bot := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "team-a-bot", Provisioner: "team-a"})
	serial := admin.Leaf.SerialNumber.String()
	tok, err := ca.MintRevokeToken(c.Dir, c.Password, "team-a", serial)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Client.Revoke(context.Background(), serial, tok, "")
	wantAPIError(t, err, 403, `provisioner "team-a" may not revoke spiffe://acme.test/client/ops-admin (allowed names: client/team-a-*, server/team-a-*)`)
	if _, err := c.Client.Renew(context.Background(), admin); err != nil {
		t.Fatalf("the refused revocation took effect: %v", err)
	}
	unknown := "123456789"
	tok, _ = ca.MintRevokeToken(c.Dir, c.Password, "team-a", unknown)
	err = c.Client.Revoke(context.Background(), unknown, tok, "")
	wantAPIError(t, err, 403, "serial 123456789 is not in the CA's store")
	// Its own names: allowed.
	bs := bot.Leaf.SerialNumber.String()
	tok, _ = ca.MintRevokeToken(c.Dir, c.Password, "team-a", bs)
	if err := c.Client.Revoke(context.Background(), bs, tok, ""); err != nil {
		t.Fatal(err)
	}
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// postWithCert sends a JSON body over mTLS and returns the status and the
// CA's message, bypassing the client's own checks.
func postWithCert(t *testing.T, c *catest.CA, path string, cert tls.Certificate, body string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Roots, Certificates: []tls.Certificate{cert}}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Post(c.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Message string `json:"message"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Message
}

// expiredLeaf signs, with the CA's own intermediate, an mcpca client
// certificate that expired an hour ago.
func expiredLeaf(t *testing.T, c *catest.CA) tls.Certificate {
	t.Helper()
	u, _ := url.Parse("spiffe://acme.test/client/old")
	return signLeaf(t, c, &x509.Certificate{
		SerialNumber: big.NewInt(424242), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, mustKey(t))
}

// signLeaf signs tmpl for key with the CA's own intermediate, past every
// check of the CA's API.
func signLeaf(t *testing.T, c *catest.CA, tmpl *x509.Certificate, key crypto.Signer) tls.Certificate {
	t.Helper()
	l := ca.Layout{Dir: c.Dir}
	ik, err := pemutil.Read(l.IntermediateKey(), pemutil.WithPassword(c.Password))
	if err != nil {
		t.Fatal(err)
	}
	ic, err := pemutil.ReadCertificate(l.IntermediateCert())
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ic, key.Public(), ik)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, ic.Raw}, PrivateKey: key, Leaf: leaf}
}

func TestCARefusesExpiredOrForeignCertificateClearly(t *testing.T) {
	c, _ := startCA(t)
	status, msg := postWithCert(t, c, "/1.0/renew", expiredLeaf(t, c), "{}")
	if status != 401 || !strings.Contains(msg, "renew needs the current certificate as the TLS client certificate: ca: the certificate (serial 424242) expired at ") ||
		!strings.HasSuffix(msg, "and can no longer renew: enrol again with a new token") {
		t.Fatalf("expired: %d %q", status, msg)
	}
	other := catest.Start(t, catest.Options{})
	foreign := other.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "stranger"})
	status, msg = postWithCert(t, c, "/1.0/renew", foreign, "{}")
	if status != 401 || !strings.Contains(msg, "is not issued by this CA") {
		t.Fatalf("foreign: %d %q", status, msg)
	}
	status, msg = postWithCert(t, c, "/1.0/revoke", foreign, `{"serial":"`+foreign.Leaf.SerialNumber.String()+`"}`)
	if status != 401 || !strings.Contains(msg, "revocation needs an operator token or the certificate itself as the TLS client certificate: ca: the certificate") {
		t.Fatalf("foreign revoke: %d %q", status, msg)
	}
	status, msg = postWithCert(t, c, "/1.0/renew", tls.Certificate{}, "{}")
	if status != 401 || !strings.Contains(msg, "renew needs the current certificate as the TLS client certificate: none was presented") {
		t.Fatalf("no cert: %d %q", status, msg)
	}
}
