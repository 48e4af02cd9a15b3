package ca_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/identity"
)

// The CA behaves the same on mcpca's store (the default, db/mcpca.db) and on
// step-ca's bbolt driver (db/ca.db): one-time tokens, revocation by serial
// through the CRL, renewal refused after revocation.
func TestDatabaseChoice(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       []ca.Option
		file, none string
	}{
		{"store", nil, "mcpca.db", "ca.db"},
		{"step-ca", []ca.Option{ca.WithStepCADatabase()}, "ca.db", "mcpca.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := catest.Start(t, catest.Options{CAOptions: tc.opts})
			tok := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "dora"})
			cert, err := c.EnrollToken(tok)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.EnrollToken(tok)
			wantAPIError(t, err, 401, "token already used")
			serial := cert.Leaf.SerialNumber.String()
			rt, err := ca.MintRevokeToken(c.Dir, c.Password, "", serial)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Client.Revoke(context.Background(), serial, rt, "test"); err != nil {
				t.Fatal(err)
			}
			der, err := c.Client.CRL(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			crl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range crl.RevokedCertificateEntries {
				found = found || e.SerialNumber.String() == serial
			}
			if !found {
				t.Fatalf("serial %s not in the CRL after revocation", serial)
			}
			_, err = c.Client.Renew(context.Background(), cert)
			wantAPIError(t, err, 401, "revoked")
			if _, err := os.Stat(filepath.Join(c.Dir, "db", tc.file)); err != nil {
				t.Fatalf("database file: %v", err)
			}
			if _, err := os.Stat(filepath.Join(c.Dir, "db", tc.none)); err == nil {
				t.Fatalf("db/%s exists, but this CA uses db/%s", tc.none, tc.file)
			}
		})
	}
}

// A store file another process holds makes Open fail fast, naming the file.
func TestStoreLockedByAnotherProcess(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Server.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Hold the store file open the way a second process would.
	held, err := store.Open(filepath.Join(c.Dir, "db", "mcpca.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Shutdown()
	_, err = ca.Open(c.Dir, c.Password, ca.WithStoreOptions(store.WithOpenTimeout(10*time.Millisecond)))
	want := "ca: store: opening " + filepath.Join(c.Dir, "db", "mcpca.db") + ": the file is locked by another process (waited 10ms)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

// A CSR whose signature does not verify is refused by step-ca's signing,
// after the token is consumed, as upstream step-ca does.
func TestCSRWithBadSignatureConsumesTheToken(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	tok := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "eve"})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good, err := catest.CSRForToken(tok, key)
	if err != nil {
		t.Fatal(err)
	}
	raw := bytes.Clone(good.Raw)
	raw[len(raw)-1] ^= 0x01 // the last byte of the signature
	bad, err := x509.ParseCertificateRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.Sign(context.Background(), bad, tok)
	wantAPIError(t, err, 400, "ca: signing refused: invalid certificate request: x509: ECDSA verification failure")
	_, err = c.Client.Sign(context.Background(), good, tok)
	wantAPIError(t, err, 401, "token already used")
}

func TestEnableAdminNeedsStepCADatabase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	pw := []byte("pw")
	if _, err := ca.Init(ca.InitConfig{Dir: dir, Name: "X", TrustDomain: "x.test", Address: "127.0.0.1:9", Password: pw, InsecurePassword: true}); err != nil {
		t.Fatal(err)
	}
	file := ca.Layout{Dir: dir}.StepConfig()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["authority"].(map[string]any)["enableAdmin"] = true
	if b, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = ca.Open(dir, pw)
	want := "ca: " + file + " enables step-ca's admin API (enableAdmin), which needs step-ca's database: serve with --database step-ca, or remove enableAdmin"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestCheckAndCompactStore(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	used := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "a"})
	if _, err := c.EnrollToken(used); err != nil {
		t.Fatal(err)
	}
	c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "b"})
	_, err := ca.CheckStore(c.Dir)
	if err == nil || !strings.Contains(err.Error(), "is locked by another mcpca serve") {
		t.Fatalf("CheckStore of a served CA: %v", err)
	}
	if _, _, err := ca.CompactStore(c.Dir); err == nil || !strings.Contains(err.Error(), "is locked by another mcpca serve") {
		t.Fatalf("CompactStore of a served CA: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Server.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := ca.CheckStore(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Certificates != 2 || rep.Tokens != 2 || rep.Path != filepath.Join(c.Dir, "db", "mcpca.db") || rep.DiskBytes < rep.FileBytes {
		t.Fatalf("report: %+v", rep)
	}
	before, after, err := ca.CompactStore(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if after > before {
		t.Fatalf("compacted from %d to %d bytes", before, after)
	}
	c2 := restart(t, c)
	_, err = c2.EnrollToken(used)
	wantAPIError(t, err, 401, "token already used")

	fresh := filepath.Join(t.TempDir(), "pki")
	if _, err := ca.Init(ca.InitConfig{Dir: fresh, Name: "X", TrustDomain: "x.test", Address: "127.0.0.1:9", Password: []byte("pw"), InsecurePassword: true}); err != nil {
		t.Fatal(err)
	}
	want := "ca: no store at " + filepath.Join(fresh, "db", "mcpca.db") + ": the CA has not been served yet, or serves with --database step-ca"
	if _, err := ca.CheckStore(fresh); err == nil || err.Error() != want {
		t.Fatalf("CheckStore without a store: %v", err)
	}
	if _, _, err := ca.CompactStore(fresh); err == nil || err.Error() != want {
		t.Fatalf("CompactStore without a store: %v", err)
	}
}
