package ca_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/caclient"
)

const weakAdvice = ": use at least 12 characters, 6 of them different, not a common password or a keyboard run; random words or `openssl rand -base64 24` will do. --insecure-password accepts it anyway, but whoever obtains an encrypted key can then guess the password offline"

func TestCheckPasswordRefusesWeakPasswords(t *testing.T) {
	for _, tc := range []struct{ pw, why string }{
		{"password", "8 characters"},
		{"a", "1 character"},
		{" ", "1 character"},
		{"", "0 characters"},
		{"Password1234", "a common password"},
		{"aaaaaaaaaaaaaaaa", "only 1 different character"},
		{"abcabcabcabcabc", "only 3 different characters"},
		{"abcdefghijklmn", "a run of the alphabet, the digits or a keyboard row"},
		{"1234567890123", "a run of the alphabet, the digits or a keyboard row"},
		{"QWERTYUIOPASDF", "a run of the alphabet, the digits or a keyboard row"},
		{"nmlkjihgfedcba", "a run of the alphabet, the digits or a keyboard row"},
	} {
		err := ca.CheckPassword([]byte(tc.pw))
		if want := "ca: weak password (" + tc.why + ")" + weakAdvice; err == nil || err.Error() != want {
			t.Errorf("CheckPassword(%q) = %v, want %s", tc.pw, err, want)
		}
	}
	for _, pw := range []string{"test-password", "tangerine volcano staple orbit", "Xq7!v0-Lk2#pz"} {
		if err := ca.CheckPassword([]byte(pw)); err != nil {
			t.Errorf("CheckPassword(%q): %v", pw, err)
		}
	}
}

func TestInitRefusesWeakPasswordUnlessInsecure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	cfg := ca.InitConfig{Dir: dir, Name: "X", TrustDomain: "x.test", Address: "127.0.0.1:9", Password: []byte("password")}
	_, err := ca.Init(cfg)
	if want := "ca: init: weak password (8 characters)" + weakAdvice; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Fatal("a refused init created the directory")
	}
	cfg.InsecurePassword = true
	if _, err := ca.Init(cfg); err != nil {
		t.Fatal(err)
	}
	// A generated password passes the check.
	gen := filepath.Join(t.TempDir(), "pki")
	res, err := ca.Init(ca.InitConfig{Dir: gen, Name: "X", TrustDomain: "x.test", Address: "127.0.0.1:9"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(res.PasswordFile)
	if err := ca.CheckPassword(bytes.TrimRight(b, "\n")); err != nil {
		t.Fatalf("generated password: %v", err)
	}
}

// A provisioner with its own password: the team mints with it and never
// holds the CA password; its password does not decrypt the admin key.
func TestProvisionerOwnPassword(t *testing.T) {
	c, _ := startCA(t)
	teamPW := []byte("team-a orbit tangerine 42")
	policy := ca.ProvisionerPolicy{AllowRoles: []string{"reader"}, AllowNames: []string{"client/team-a-*"}}

	// Refusals, before anything is written.
	_, err := ca.AddProvisioner(c.Dir, c.Password, "team-a", policy, ca.WithProvisionerPassword([]byte("password")))
	if want := `ca: provisioner "team-a": weak password (8 characters)` + weakAdvice; err == nil || err.Error() != want {
		t.Fatalf("weak: got %v, want %s", err, want)
	}
	_, err = ca.AddProvisioner(c.Dir, c.Password, "team-a", policy, ca.WithProvisionerPassword(c.Password))
	if want := `ca: provisioner "team-a": its own password is the CA password, which decrypts the admin key too: choose another`; err == nil || err.Error() != want {
		t.Fatalf("same as CA: got %v, want %s", err, want)
	}
	// Adding needs the CA password: the team's password is not enough.
	_, err = ca.AddProvisioner(c.Dir, teamPW, "team-a", policy, ca.WithProvisionerPassword(teamPW))
	if want := `ca: the password does not decrypt the key of provisioner "admin": wrong password?`; err == nil || err.Error() != want {
		t.Fatalf("without the CA password: got %v, want %s", err, want)
	}

	res, err := ca.AddProvisioner(c.Dir, c.Password, "team-a", policy, ca.WithProvisionerPassword(teamPW))
	if err != nil {
		t.Fatal(err)
	}
	if !res.OwnPassword {
		t.Fatal("policy does not record the own password")
	}
	if err := c.Server.Reload(); err != nil {
		t.Fatal(err)
	}
	req := ca.TokenRequest{Kind: identity.KindClient, Name: "team-a-bot", Roles: []string{"reader"}, Provisioner: "team-a"}
	tok, err := ca.MintToken(c.Dir, teamPW, req)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.EnrollToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id := c.Identity(cert); id.ID.String() != "spiffe://acme.test/client/team-a-bot" {
		t.Fatalf("identity %s", id.ID)
	}
	// The team's password does not decrypt the admin key.
	_, err = ca.MintToken(c.Dir, teamPW, ca.TokenRequest{Kind: identity.KindClient, Name: "ceo", Roles: []string{"admin"}})
	if want := `ca: the password does not decrypt the key of provisioner "admin": wrong password?`; err == nil || err.Error() != want {
		t.Fatalf("admin with the team's password: got %v, want %s", err, want)
	}
	// Nor does the CA password decrypt team-a's key: the message says why.
	_, err = ca.MintToken(c.Dir, c.Password, req)
	if want := `ca: the password does not decrypt the key of provisioner "team-a": it has its own password (set by provisioner add --provisioner-password-file), not the CA password: pass that file with --password-file`; err == nil || err.Error() != want {
		t.Fatalf("team-a with the CA password: got %v, want %s", err, want)
	}
	// Revocation tokens of team-a use its own password too.
	serial := cert.Leaf.SerialNumber.String()
	rt, err := ca.MintRevokeToken(c.Dir, teamPW, "team-a", serial)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Revoke(context.Background(), serial, rt, "test"); err != nil {
		t.Fatal(err)
	}
}

func httpsClient(c *catest.CA) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Roots}}, Timeout: 30 * time.Second}
}

func get(t *testing.T, c *catest.CA, path string) (int, string) {
	t.Helper()
	resp, err := httpsClient(c).Get(c.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func setPublish(t *testing.T, c *catest.CA, on bool) {
	t.Helper()
	file := ca.Layout{Dir: c.Dir}.SettingsFile()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["publishEncryptedKeys"] = on
	b, _ = json.Marshal(m)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Server.Reload(); err != nil {
		t.Fatal(err)
	}
}

func TestProvisionerKeysAreNotPublishedByDefault(t *testing.T) {
	c, _ := startCA(t)
	var list struct {
		Provisioners []map[string]any `json:"provisioners"`
	}
	for _, path := range []string{"/provisioners", "/1.0/provisioners"} {
		status, body := get(t, c, path)
		if status != 200 || strings.Contains(body, "encryptedKey") {
			t.Fatalf("GET %s: %d %s", path, status, body)
		}
		if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Provisioners) != 1 || list.Provisioners[0]["name"] != "admin" || list.Provisioners[0]["key"] == nil {
			t.Fatalf("GET %s: %v %s", path, err, body)
		}
	}
	kid := list.Provisioners[0]["key"].(map[string]any)["kid"].(string)
	const want = `{"message":"ca: this CA does not publish its provisioners' encrypted keys: to serve them for the step CLI's ` + "`step ca token`" + `, set \"publishEncryptedKeys\": true in its config/mcpca.json (or mcpca init --publish-encrypted-keys) and reload it (SIGHUP)","status":404}`
	for _, path := range []string{"/provisioners/" + kid + "/encrypted-key", "/1.0/provisioners/" + kid + "/encrypted-key"} {
		if status, body := get(t, c, path); status != 404 || strings.TrimSpace(body) != want {
			t.Fatalf("GET %s: %d %s", path, status, body)
		}
	}
	if status, body := get(t, c, "/provisioners?limit=x"); status != 400 || !strings.Contains(body, `ca: limit \"x\" is not an integer`) {
		t.Fatalf("bad limit: %d %s", status, body)
	}

	// The operator opts in: step-ca's answers, keys included.
	setPublish(t, c, true)
	if status, body := get(t, c, "/provisioners"); status != 200 || !strings.Contains(body, `"encryptedKey":"`) {
		t.Fatalf("published list: %d %s", status, body)
	}
	if status, body := get(t, c, "/1.0/provisioners/"+kid+"/encrypted-key"); status != 200 || !strings.Contains(body, `"key":"`) {
		t.Fatalf("published key: %d %s", status, body)
	}
	setPublish(t, c, false)
	if status, body := get(t, c, "/provisioners"); status != 200 || strings.Contains(body, "encryptedKey") {
		t.Fatalf("after opting out again: %d %s", status, body)
	}
}

// serveDir opens and serves an initialised CA directory on ln.
func serveDir(t *testing.T, dir string, pw []byte, ln net.Listener, logs io.Writer) *ca.Server {
	t.Helper()
	srv, err := ca.Open(dir, pw, ca.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
		<-done
	})
	return srv
}

func TestRootKeyOfflineAndWarning(t *testing.T) {
	pw := []byte("test-password")
	// Default layout: the root key sits in secrets/, and Open says so.
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := ca.Init(ca.InitConfig{Dir: dir, Name: "X", TrustDomain: "x.test", Address: "127.0.0.1:9", Password: pw}); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	srv, err := ca.Open(dir, pw, ca.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	_ = srv.Close(context.Background())
	want := `"level":"WARN","msg":"the root CA key sits in the CA directory, and serving never uses it: move it offline (see docs/operations.md); keep it for signing a new intermediate","event":"root_key_online","file":"` + ca.Layout{Dir: dir}.RootKey() + `"`
	if !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks the warning %s:\n%s", want, logs.String())
	}

	// --root-key-out: the root key is written elsewhere, serving works
	// without it and does not warn.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	off := filepath.Join(t.TempDir(), "root_ca_key.offline")
	dir2 := filepath.Join(t.TempDir(), "pki")
	res, err := ca.Init(ca.InitConfig{Dir: dir2, Name: "X", TrustDomain: "acme.test", Address: ln.Addr().String(), Password: pw, RootKeyOut: off})
	if err != nil {
		t.Fatal(err)
	}
	if res.RootKeyFile != off {
		t.Fatalf("RootKeyFile %q", res.RootKeyFile)
	}
	if st, err := os.Stat(off); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("offline root key: %v %v", err, st)
	}
	if _, err := os.Stat(ca.Layout{Dir: dir2}.RootKey()); !os.IsNotExist(err) {
		t.Fatalf("secrets/root_ca_key exists: %v", err)
	}
	var logs2 syncBuffer
	serveDir(t, dir2, pw, ln, &logs2)
	if strings.Contains(logs2.String(), "root_key_online") {
		t.Fatalf("warned without a root key: %s", logs2.String())
	}
	c := clientFor(t, dir2, ln.Addr().String())
	tok, err := ca.MintToken(dir2, pw, ca.TokenRequest{Kind: identity.KindClient, Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnrollToken(tok); err != nil {
		t.Fatalf("enrolment without the root key: %v", err)
	}
	// A root key destination that exists is refused.
	_, err = ca.Init(ca.InitConfig{Dir: filepath.Join(t.TempDir(), "pki"), Name: "X", TrustDomain: "x.test", Address: "127.0.0.1:9", Password: pw, RootKeyOut: off})
	if want := "ca: init: --root-key-out " + off + " already exists: choose a new file"; err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

// clientFor builds a catest.CA view of a CA served from dir at addr.
func clientFor(t *testing.T, dir, addr string) *catest.CA {
	t.Helper()
	root, err := os.ReadFile(ca.Layout{Dir: dir}.RootCert())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(root)
	url := "https://" + addr
	cl, err := caclient.New(url, pool)
	if err != nil {
		t.Fatal(err)
	}
	return &catest.CA{Dir: dir, URL: url, Roots: pool, Client: cl}
}

var oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}

// crlIDP fetches the CA's CRL and returns the URI of its Issuing
// Distribution Point.
func crlIDP(t *testing.T, c *catest.CA) string {
	t.Helper()
	status, body := get(t, c, "/1.0/crl")
	if status != 200 {
		t.Fatalf("GET /1.0/crl: %d %s", status, body)
	}
	crl, err := x509.ParseRevocationList([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range crl.Extensions {
		if !e.Id.Equal(oidIssuingDistributionPoint) {
			continue
		}
		// IssuingDistributionPoint ::= SEQUENCE { distributionPoint [0] {
		// fullName [0] GeneralNames { uniformResourceIdentifier [6] } } }
		var idp struct {
			DP asn1.RawValue `asn1:"optional,tag:0"`
		}
		if _, err := asn1.Unmarshal(e.Value, &idp); err != nil {
			t.Fatal(err)
		}
		var full asn1.RawValue
		if _, err := asn1.Unmarshal(idp.DP.Bytes, &full); err != nil {
			t.Fatal(err)
		}
		var uri asn1.RawValue
		if _, err := asn1.Unmarshal(full.Bytes, &uri); err != nil {
			t.Fatal(err)
		}
		return string(uri.Bytes)
	}
	t.Fatal("the CRL has no Issuing Distribution Point")
	return ""
}

func TestCRLIssuingDistributionPointIsTheCAAddress(t *testing.T) {
	c, _ := startCA(t)
	if got, want := crlIDP(t, c), c.URL+"/1.0/crl"; got != want {
		t.Fatalf("IDP %q, want %q", got, want)
	}
	// A directory made before init wrote idpURL gets the CA's address too.
	file := ca.Layout{Dir: c.Dir}.StepConfig()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m["crl"].(map[string]any), "idpURL")
	b, _ = json.Marshal(m)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Server.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, want := crlIDP(t, c), c.URL+"/1.0/crl"; got != want {
		t.Fatalf("IDP after reload %q, want %q", got, want)
	}
}
