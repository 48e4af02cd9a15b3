package ca_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The CA on PostgreSQL: one-time tokens, revocation through the CRL,
// renewal refused after revocation, /health naming the database, and no
// db/mcpca.db.
func TestPostgresDatabase(t *testing.T) {
	c := catest.Start(t, catest.Options{CAOptions: []ca.Option{ca.WithPostgres(pgtest.DSN(t))}})
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
	_, err = c.Client.Renew(context.Background(), cert)
	wantAPIError(t, err, 401, "revoked")
	if _, err := os.Stat(filepath.Join(c.Dir, "db", "mcpca.db")); err == nil {
		t.Fatal("db/mcpca.db exists, but this CA runs on PostgreSQL")
	}
	if c.Server.Store().Backend() != "postgresql" {
		t.Fatalf("backend %s", c.Server.Store().Backend())
	}
}

// copyDir copies a CA directory (a replica's copy).
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// replicas is two CA directories (a, b: copies of one made by Init)
// sharing one PostgreSQL database, opened on one fake clock.
type replicas struct {
	work, a, b string
	pw         []byte
	clk        *clock.Fake
	open       func(dir string) *ca.Server
}

func newReplicas(t *testing.T) *replicas {
	t.Helper()
	dsn := pgtest.DSN(t)
	work := t.TempDir()
	r := &replicas{work: work, a: filepath.Join(work, "a"), b: filepath.Join(work, "b"), pw: []byte("test-password"), clk: clock.NewFake(time.Now())}
	if _, err := ca.Init(ca.InitConfig{Dir: r.a, Name: "Replicated", TrustDomain: "acme.test", Address: "ca.acme.test:443", DNSNames: []string{"localhost"}, Password: r.pw}); err != nil {
		t.Fatal(err)
	}
	copyDir(t, r.a, r.b)
	logs := slog.New(slog.NewJSONHandler(io.Discard, nil))
	r.open = func(dir string) *ca.Server {
		s, err := ca.Open(dir, r.pw, ca.WithPostgres(dsn), ca.WithClock(r.clk), ca.WithLogger(logs))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		return s
	}
	return r
}

// Two replicas on copies of one directory: a provisioner added at one
// reaches the other at its next poll; an edit made at the other meanwhile
// loses to the published one, is kept beside, and the reload says so.
func TestSharedConfiguration(t *testing.T) {
	r := newReplicas(t)
	work, a, b, pw, clk, open := r.work, r.a, r.b, r.pw, r.clk, r.open
	old := filepath.Join(work, "old")
	copyDir(t, a, old)
	sa, sb := open(a), open(b)

	// team-a added at a, published by its reload.
	if _, err := ca.AddProvisioner(a, pw, "team-a", ca.ProvisionerPolicy{AllowNames: []string{"client/team-a-*"}}); err != nil {
		t.Fatal(err)
	}
	if err := sa.Reload(); err != nil {
		t.Fatal(err)
	}
	// team-b added at b before b polled: its reload finds team-a's version.
	if _, err := ca.AddProvisioner(b, pw, "team-b", ca.ProvisionerPolicy{AllowNames: []string{"client/team-b-*"}}); err != nil {
		t.Fatal(err)
	}
	err := sb.Reload()
	if err == nil || !strings.Contains(err.Error(), "another replica published the configuration (version 2) before this edit: that version applies here, and the edit is kept in config/*.unpublished: make it again") {
		t.Fatalf("b's reload of a conflicting edit: %v", err)
	}
	if sb.Settings().Provisioners["team-a"] == nil || sb.Settings().Provisioners["team-b"] != nil {
		t.Fatalf("b serves %v, want the published version (team-a, no team-b)", keys(sb.Settings().Provisioners))
	}
	kept, err := os.ReadFile(filepath.Join(b, "config", "mcpca.json.unpublished"))
	if err != nil || !strings.Contains(string(kept), "team-b") {
		t.Fatalf("b's edit is not kept in mcpca.json.unpublished: %v", err)
	}

	// team-b added again at b, on top: a applies it at its next poll.
	if _, err := ca.AddProvisioner(b, pw, "team-b", ca.ProvisionerPolicy{AllowNames: []string{"client/team-b-*"}}); err != nil {
		t.Fatal(err)
	}
	if err := sb.Reload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sa.Settings().Provisioners["team-b"] == nil {
		if time.Now().After(deadline) {
			t.Fatalf("a never applied team-b: %v", keys(sa.Settings().Provisioners))
		}
		clk.Advance(ca.DefaultConfigPoll)
		time.Sleep(10 * time.Millisecond) // let the poll run before the next tick
	}
	if s, err := ca.LoadSettings(a); err != nil || s.Provisioners["team-b"] == nil {
		t.Fatalf("a's mcpca.json after the poll: %v", err)
	}
	// A replica started later on an old copy takes the shared configuration.
	sd := open(old)
	if sd.Settings().Provisioners["team-b"] == nil || sd.Settings().Provisioners["team-a"] == nil {
		t.Fatalf("a replica started on an older copy serves %v, not the shared configuration", keys(sd.Settings().Provisioners))
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
