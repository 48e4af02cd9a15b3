package ca_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/caclient"
)

// syncBuffer collects the CA's JSON log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startCA(t *testing.T) (*catest.CA, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	c := catest.Start(t, catest.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	return c, logs
}

func wantAPIError(t *testing.T, err error, status int, substr string) {
	t.Helper()
	var ae *caclient.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want a CA error %d containing %q, got %v", status, substr, err)
	}
	if ae.Status != status || !strings.Contains(ae.Message, substr) {
		t.Fatalf("want %d containing %q, got %d %q", status, substr, ae.Status, ae.Message)
	}
}

func TestEnrollIssuesSVIDWithRolesAndAttributes(t *testing.T) {
	c, logs := startCA(t)
	cert := c.Enroll(ca.TokenRequest{
		Kind: identity.KindClient, Name: "reporter",
		Roles: []string{"reader", "writer"}, Attributes: map[string]string{"team": "payments", "env": "prod"},
		TTL: time.Hour,
	})
	leaf := cert.Leaf
	id, err := identity.FromCertificate(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if id.ID.String() != "spiffe://acme.test/client/reporter" {
		t.Fatalf("id = %s", id.ID)
	}
	if !slices.Equal(id.Roles, []string{"reader", "writer"}) || id.Attributes["team"] != "payments" || id.Attributes["env"] != "prod" {
		t.Fatalf("roles %v attrs %v", id.Roles, id.Attributes)
	}
	// The CA's extension bytes are exactly identity's codec output.
	wantRoles, _ := identity.EncodeRoles([]string{"reader", "writer"})
	wantAttrs, _ := identity.EncodeAttributes(map[string]string{"team": "payments", "env": "prod"})
	for _, ext := range leaf.Extensions {
		switch {
		case ext.Id.Equal(identity.DefaultOIDs.Roles):
			if !bytes.Equal(ext.Value, wantRoles) || ext.Critical {
				t.Fatalf("roles extension %x critical=%v", ext.Value, ext.Critical)
			}
		case ext.Id.Equal(identity.DefaultOIDs.Attributes):
			if !bytes.Equal(ext.Value, wantAttrs) || ext.Critical {
				t.Fatalf("attributes extension %x", ext.Value)
			}
		}
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < time.Hour || got > time.Hour+2*time.Minute {
		t.Fatalf("lifetime %s, want about 1h (+backdate)", got)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("client EKU = %v", leaf.ExtKeyUsage)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.IsCA {
		t.Fatalf("key usage %v isCA %v", leaf.KeyUsage, leaf.IsCA)
	}
	// go-spiffe accepts it as an X509-SVID.
	td := spiffeid.RequireTrustDomainFromString("acme.test")
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{c.Root})
	chain := []*x509.Certificate{leaf}
	for _, der := range cert.Certificate[1:] {
		ic, _ := x509.ParseCertificate(der)
		chain = append(chain, ic)
	}
	sid, _, err := x509svid.Verify(chain, bundle)
	if err != nil {
		t.Fatalf("go-spiffe rejects the SVID: %v", err)
	}
	if sid.String() != "spiffe://acme.test/client/reporter" {
		t.Fatalf("go-spiffe id %s", sid)
	}
	// One JSON log line for the issuance, without the token.
	var found bool
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, `"event":"issue"`) {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		roles, _ := rec["roles"].([]any)
		if rec["identity"] == "spiffe://acme.test/client/reporter" && rec["provisioner"] == "admin" && rec["serial"] == leaf.SerialNumber.String() &&
			rec["client"] != nil && len(roles) == 2 && roles[0] == "reader" {
			found = true
		}
		if strings.Contains(line, "eyJ") || strings.Contains(line, "ott") || strings.Contains(line, "PRIVATE") || strings.Contains(line, "test-password") {
			t.Fatalf("log line carries a token: %s", line)
		}
	}
	if !found {
		t.Fatalf("no issuance log line in:\n%s", logs)
	}
}

func TestServerIdentityCarriesDNSNamesAndServerAuth(t *testing.T) {
	c, _ := startCA(t)
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "files", DNSNames: []string{"files.acme.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, Roles: []string{"mcp-server"}})
	if !slices.Equal(cert.Leaf.DNSNames, []string{"files.acme.test"}) || len(cert.Leaf.IPAddresses) != 1 {
		t.Fatalf("SANs %v %v", cert.Leaf.DNSNames, cert.Leaf.IPAddresses)
	}
	if !slices.Contains(cert.Leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Fatalf("server EKU = %v", cert.Leaf.ExtKeyUsage)
	}
	if u := cert.Leaf.URIs; len(u) != 1 || u[0].String() != "spiffe://acme.test/server/files" {
		t.Fatalf("URIs %v", u)
	}
}

func TestTokenIsOneTime(t *testing.T) {
	c, _ := startCA(t)
	tok := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "once"})
	if _, err := c.EnrollToken(tok); err != nil {
		t.Fatal(err)
	}
	_, err := c.EnrollToken(tok)
	wantAPIError(t, err, 401, "token already used")
}

func TestTokenSurvivesCARestart(t *testing.T) {
	c, _ := startCA(t)
	tok := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "early"}, ca.WithClock(clock.NewFake(time.Now().Add(-30*time.Second))))
	used := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "used"})
	if _, err := c.EnrollToken(used); err != nil {
		t.Fatal(err)
	}
	c2 := restart(t, c)
	if _, err := c2.EnrollToken(tok); err != nil {
		t.Fatalf("token minted before the restart: %v", err)
	}
	_, err := c2.EnrollToken(used)
	wantAPIError(t, err, 401, "token already used")
}

// restart stops the CA and serves the same directory on a new listener at the
// same address.
func restart(t *testing.T, c *catest.CA) *catest.CA {
	t.Helper()
	addr := strings.TrimPrefix(c.URL, "https://")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Server.Close(ctx); err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Open(c.Dir, c.Password, ca.WithLogger(slog.New(slog.NewJSONHandler(discard{}, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	n := *c
	n.Server = srv
	return &n
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestBadTokens(t *testing.T) {
	c, _ := startCA(t)
	t.Run("expired", func(t *testing.T) {
		tok := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "late", TokenTTL: time.Minute}, ca.WithClock(clock.NewFake(time.Now().Add(-10*time.Minute))))
		_, err := c.EnrollToken(tok)
		wantAPIError(t, err, 401, "token is expired")
	})
	t.Run("other CA audience", func(t *testing.T) {
		other := catest.Start(t, catest.Options{})
		// Same provisioner name, key of another CA: unknown key here.
		tok := other.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "x"})
		_, err := c.EnrollToken(tok)
		wantAPIError(t, err, 401, `ca: token rejected: audience "`+other.URL+`/1.0/sign" is not this CA's `+c.URL+"/1.0/sign")
	})
	t.Run("unknown key, right audience", func(t *testing.T) {
		_, err := c.EnrollToken(ca.TokenWithUnknownKeyForTest(t, c.Dir))
		wantAPIError(t, err, 401, "ca: token rejected: provisioner not found or invalid audience")
	})
	t.Run("wrong audience same key", func(t *testing.T) {
		// A token for this CA's revoke endpoint is not a sign token.
		tok, err := ca.MintRevokeToken(c.Dir, c.Password, "", "123")
		if err != nil {
			t.Fatal(err)
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr := mustCSR(t, key, "spiffe://acme.test/client/x")
		_, err = c.Client.Sign(context.Background(), csr, tok)
		wantAPIError(t, err, 401, "audience")
	})
	t.Run("garbage", func(t *testing.T) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr := mustCSR(t, key, "spiffe://acme.test/client/x")
		_, err := c.Client.Sign(context.Background(), csr, "not-a-token")
		wantAPIError(t, err, 400, "the token is not a compact JWS")
		_, err = c.Client.Sign(context.Background(), csr, "eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
		wantAPIError(t, err, 400, "ca: token has no expiry (exp): mint tokens with `mcpca token`")
	})
}

func mustCSR(t *testing.T, key *ecdsa.PrivateKey, uris ...string) *x509.CertificateRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	return csr
}

func TestCSRMustMatchToken(t *testing.T) {
	c, _ := startCA(t)
	tok := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "alice"})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := mustCSR(t, key, "spiffe://acme.test/client/mallory")
	_, err := c.Client.Sign(context.Background(), csr, tok)
	wantAPIError(t, err, 403, "ca: signing refused: certificate request does not contain the valid URIs - got [spiffe://acme.test/client/mallory], want [spiffe://acme.test/client/alice]")
}

func TestCSRCarryingRolesExtensionIsRefused(t *testing.T) {
	c, _ := startCA(t)
	tok := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "alice"})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("spiffe://acme.test/client/alice")
	roles, _ := identity.EncodeRoles([]string{"admin"})
	tmpl := &x509.CertificateRequest{URIs: []*url.URL{u}}
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkixExt(identity.DefaultOIDs.Roles, roles))
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	_, err = c.Client.Sign(context.Background(), csr, tok)
	wantAPIError(t, err, 400, "the CSR carries the extension 1.3.6.1.4.1.99999.1.1 itself: roles and attributes come only from the token")
}

func TestRenewKeepsIdentityAndRevokedCannotRenew(t *testing.T) {
	c, logs := startCA(t)
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "bob", Roles: []string{"reader"}, Attributes: map[string]string{"team": "ops"}, TTL: 10 * time.Minute})
	chain, err := c.Client.Renew(context.Background(), cert)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := identity.FromCertificate(cert.Leaf)
	nu, err := identity.FromCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	if nu.ID != old.ID || !slices.Equal(nu.Roles, old.Roles) || nu.Attributes["team"] != "ops" || nu.Serial.Cmp(old.Serial) == 0 {
		t.Fatalf("renewed identity %+v, old %+v", nu, old)
	}
	if !strings.Contains(logs.String(), `"event":"renew"`) {
		t.Fatal("no renew log line")
	}
	renewed := catest.TLSCertificate(chain, cert.PrivateKey)
	if err := c.Client.RevokeSelf(context.Background(), renewed, "key compromise"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.Renew(context.Background(), renewed)
	wantAPIError(t, err, 401, "revoked")
	// The CRL lists it.
	der, err := c.Client.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(chain[0].SerialNumber) == 0 {
			listed = true
		}
	}
	if !listed {
		t.Fatalf("revoked serial not in the CRL (%d entries)", len(crl.RevokedCertificateEntries))
	}
	want := `"event":"revoke","serial":"` + chain[0].SerialNumber.String() + `","serial_hex":"` + chain[0].SerialNumber.Text(16) + `"`
	if !strings.Contains(logs.String(), want) {
		t.Fatalf("no revoke log line with %s:\n%s", want, logs.String())
	}
}

func TestOperatorRevokesBySerial(t *testing.T) {
	c, _ := startCA(t)
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "carol"})
	serial := cert.Leaf.SerialNumber.String()
	tok, err := ca.MintRevokeToken(c.Dir, c.Password, "", serial)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Revoke(context.Background(), serial, tok, "left the team"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.Renew(context.Background(), cert)
	wantAPIError(t, err, 401, "revoked")
}

func TestHolderCannotRevokeAnotherSerial(t *testing.T) {
	c, _ := startCA(t)
	a := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "a"})
	b := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "b"})
	// a presents itself but names b's serial: refused by the CA.
	tok := "" // no operator token
	_ = tok
	err := revokeSerialWithCert(t, c, a, b.Leaf.SerialNumber.String())
	wantAPIError(t, err, 403, "is not the client certificate's serial")
}

func revokeSerialWithCert(t *testing.T, c *catest.CA, cert tls.Certificate, serial string) error {
	t.Helper()
	// RevokeSelf always sends the presented certificate's serial; build the
	// request by hand through the same client type.
	forged := cert
	forged.Leaf = &x509.Certificate{}
	*forged.Leaf = *cert.Leaf
	forged.Leaf.SerialNumber = mustBig(serial)
	return c.Client.RevokeSelf(context.Background(), forged, "")
}

func TestRenewWithExpiredCertificateIsClear(t *testing.T) {
	c, _ := startCA(t)
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "old", TTL: 5 * time.Minute})
	expired := cert
	expired.Leaf = &x509.Certificate{}
	*expired.Leaf = *cert.Leaf
	expired.Leaf.NotAfter = time.Now().Add(-time.Minute)
	_, err := c.Client.Renew(context.Background(), expired)
	if err == nil || !strings.Contains(err.Error(), "can no longer renew: enrol again with a new token") {
		t.Fatalf("got %v", err)
	}
}

func TestClaimBoundsAreEnforcedByTheCA(t *testing.T) {
	c, _ := startCA(t)
	tooMany := make([]string, identity.MaxRoles+1)
	for i := range tooMany {
		tooMany[i] = "r" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	cases := []struct {
		name   string
		claims *ca.Claims
		status int
		msg    string
	}{
		{"too many roles", &ca.Claims{Kind: "client", Name: "x", Roles: tooMany}, 400, "33 roles, the limit is 32"},
		{"bad role", &ca.Claims{Kind: "client", Name: "x", Roles: []string{"Admin!"}}, 400, `invalid role "Admin!"`},
		{"long value", &ca.Claims{Kind: "client", Name: "x", Attributes: map[string]string{"k": strings.Repeat("v", 257)}}, 400, "value is 257 bytes, the limit is 256"},
		{"bad kind", &ca.Claims{Kind: "robot", Name: "x"}, 400, `invalid kind "robot"`},
		{"bad name", &ca.Claims{Kind: "client", Name: "a/b"}, 400, `invalid name "a/b"`},
		{"ttl too long", &ca.Claims{Kind: "client", Name: "x", TTL: "48h"}, 400, "certificate lifetime 48h0m0s is outside the CA's limits [5m0s, 24h0m0s]"},
		{"no claims", nil, 400, `token has no "mcpca" claim`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := ca.MintRawTokenForTest(t, c.Dir, c.Password, "admin", tc.claims)
			_, err := c.EnrollToken(tok)
			wantAPIError(t, err, tc.status, tc.msg)
		})
	}
}

func TestRestrictedProvisionerCannotGrantMore(t *testing.T) {
	c, _ := startCA(t)
	res, err := ca.AddProvisioner(c.Dir, c.Password, "team-a", ca.ProvisionerPolicy{
		AllowRoles: []string{"reader"}, AllowAttrKeys: []string{"team"}, AllowNames: []string{"client/team-a-*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = res
	if err := c.Server.Reload(); err != nil {
		t.Fatal(err)
	}
	// Within its limits: issued.
	c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "team-a-bot", Roles: []string{"reader"}, Attributes: map[string]string{"team": "a"}, Provisioner: "team-a"})
	// The CLI-side check refuses to mint beyond the limits...
	_, err = ca.MintToken(c.Dir, c.Password, ca.TokenRequest{Kind: identity.KindClient, Name: "team-a-bot", Roles: []string{"admin"}, Provisioner: "team-a"})
	if err == nil || !strings.Contains(err.Error(), `provisioner "team-a" may not grant role "admin" (allowed: reader)`) {
		t.Fatalf("mint: %v", err)
	}
	// ...and the CA refuses a token signed by the provisioner anyway.
	cases := []struct {
		claims *ca.Claims
		msg    string
	}{
		{&ca.Claims{Kind: "client", Name: "team-a-bot", Roles: []string{"admin"}}, `provisioner "team-a" may not grant role "admin" (allowed: reader)`},
		{&ca.Claims{Kind: "client", Name: "team-b-bot"}, `provisioner "team-a" may not issue for name "client/team-b-bot" (allowed: client/team-a-*)`},
		{&ca.Claims{Kind: "server", Name: "team-a-srv"}, `may not issue for name "server/team-a-srv"`},
		{&ca.Claims{Kind: "client", Name: "team-a-x", Attributes: map[string]string{"env": "prod"}}, `provisioner "team-a" may not set attribute "env" (allowed: team)`},
	}
	for _, tc := range cases {
		tok := ca.MintRawTokenForTest(t, c.Dir, c.Password, "team-a", tc.claims)
		_, err := c.EnrollToken(tok)
		wantAPIError(t, err, 403, tc.msg)
	}
}

func TestSecondServeOnSameDirFailsAtOnce(t *testing.T) {
	c, _ := startCA(t)
	_, err := ca.Open(c.Dir, c.Password)
	if err == nil || !strings.Contains(err.Error(), "ca.lock is locked by another mcpca serve (pid ") {
		t.Fatalf("got %v", err)
	}
}

func TestWrongPasswordAndCorruptConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := ca.Init(ca.InitConfig{Dir: dir, Name: "X", TrustDomain: "x.test", Address: "127.0.0.1:9", Password: []byte("right"), InsecurePassword: true}); err != nil {
		t.Fatal(err)
	}
	_, err := ca.Open(dir, []byte("wrong"))
	if err == nil || !strings.Contains(err.Error(), "the password does not decrypt") || !strings.Contains(err.Error(), "wrong password?") {
		t.Fatalf("wrong password: %v", err)
	}
	_, err = ca.MintToken(dir, []byte("wrong"), ca.TokenRequest{Kind: identity.KindClient, Name: "a"})
	if err == nil || !strings.Contains(err.Error(), `the password does not decrypt the key of provisioner "admin": wrong password?`) {
		t.Fatalf("token with wrong password: %v", err)
	}
	orig, _ := os.ReadFile(filepath.Join(dir, "config", "mcpca.json"))
	if err := os.WriteFile(filepath.Join(dir, "config", "mcpca.json.good"), orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config", "mcpca.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ca.Open(dir, []byte("right"))
	if err == nil || !strings.Contains(err.Error(), "mcpca.json is corrupted") {
		t.Fatalf("corrupt: %v", err)
	}
	_, err = ca.Open(filepath.Join(t.TempDir(), "nothing"), []byte("right"))
	if err == nil || !strings.Contains(err.Error(), "is it a CA directory made by `mcpca init`?") && !strings.Contains(err.Error(), "a CA directory made by `mcpca init`") {
		t.Fatalf("missing: %v", err)
	}
	// A CA directory that lost its configuration.
	good, _ := os.ReadFile(filepath.Join(dir, "config", "mcpca.json.good"))
	if err := os.Remove(filepath.Join(dir, "config", "mcpca.json")); err != nil {
		t.Fatal(err)
	}
	_, err = ca.Open(dir, []byte("right"))
	if err == nil || !strings.Contains(err.Error(), "mcpca.json does not exist: is "+dir+" a CA directory made by `mcpca init`?") {
		t.Fatalf("missing settings: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config", "mcpca.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ca.Open(dir, []byte("right"))
	if err == nil || !strings.Contains(err.Error(), `invalid trustDomain ""`) {
		t.Fatalf("empty settings: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config", "mcpca.json"), good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "config", "ca.json")); err != nil {
		t.Fatal(err)
	}
	_, err = ca.MintToken(dir, []byte("right"), ca.TokenRequest{Kind: identity.KindClient, Name: "a"})
	if err == nil || !strings.Contains(err.Error(), "ca: reading step-ca configuration: open "+filepath.Join(dir, "config", "ca.json")+": no such file or directory") {
		t.Fatalf("missing ca.json: %v", err)
	}
	// Init refuses to overwrite.
	_, err = ca.Init(ca.InitConfig{Dir: dir, Name: "X", TrustDomain: "x.test", Address: "127.0.0.1:9", Password: []byte("right"), InsecurePassword: true})
	if err == nil || !strings.Contains(err.Error(), "already holds a CA") {
		t.Fatalf("re-init: %v", err)
	}
}

func TestOversizedBodyIsRefused(t *testing.T) {
	c, _ := startCA(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr := mustCSR(t, key, "spiffe://acme.test/client/x")
	_, err := c.Client.Sign(context.Background(), csr, strings.Repeat("a", ca.DefaultMaxBodyBytes))
	wantAPIError(t, err, 413, "exceeds the limit of 65536 bytes")
}

func TestKeysAreEncryptedAndPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	res, err := ca.Init(ca.InitConfig{Dir: dir, Name: "X", TrustDomain: "x.test", Address: "127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	l := ca.Layout{Dir: dir}
	if res.PasswordFile != l.PasswordFile() {
		t.Fatalf("password file %q", res.PasswordFile)
	}
	for _, f := range []string{l.RootKey(), l.IntermediateKey(), l.PasswordFile(), l.StepConfig()} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v", f, st.Mode())
		}
	}
	for _, f := range []string{l.RootKey(), l.IntermediateKey()} {
		b, _ := os.ReadFile(f)
		if !bytes.Contains(b, []byte("ENCRYPTED PRIVATE KEY")) {
			t.Fatalf("%s is not encrypted:\n%s", f, b)
		}
	}
	cfg, _ := os.ReadFile(l.StepConfig())
	if !bytes.Contains(cfg, []byte(`"encryptedKey"`)) || bytes.Contains(cfg, []byte(`"d":`)) {
		t.Fatal("provisioner private key is not encrypted in ca.json")
	}
	if len(res.RootFingerprint) != 64 {
		t.Fatalf("fingerprint %q", res.RootFingerprint)
	}
}

func TestBootstrapChecksFingerprint(t *testing.T) {
	c, _ := startCA(t)
	root, err := caclient.Bootstrap(context.Background(), c.URL, fingerprint(c.Root))
	if err != nil {
		t.Fatal(err)
	}
	if !root.Equal(c.Root) {
		t.Fatal("bootstrap returned another root")
	}
	other := catest.Start(t, catest.Options{})
	_, err = caclient.Bootstrap(context.Background(), c.URL, fingerprint(other.Root))
	if err == nil || !strings.Contains(err.Error(), "has no root with fingerprint") {
		t.Fatalf("got %v", err)
	}
}

func pkixExt(id []int, v []byte) pkix.Extension { return pkix.Extension{Id: id, Value: v} }

func mustBig(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return n
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
