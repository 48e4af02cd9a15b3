package ca_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/identity"
)

// A team's exported directory mints and revokes with the team's password,
// and holds no other key: not the admin's, not the CA's.
func TestExportProvisioner(t *testing.T) {
	c, _ := startCA(t)
	teamPW := []byte("team-a orbit tangerine 42")
	policy := ca.ProvisionerPolicy{AllowRoles: []string{"reader"}, AllowNames: []string{"client/team-a-*"}}
	if _, err := ca.AddProvisioner(c.Dir, c.Password, "team-a", policy, ca.WithProvisionerPassword(teamPW)); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.AddProvisioner(c.Dir, c.Password, "team-b", ca.ProvisionerPolicy{AllowNames: []string{"client/team-b-*"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Server.Reload(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "team-a")
	if err := ca.ExportProvisioner(c.Dir, "team-a", out); err != nil {
		t.Fatal(err)
	}
	// Only the team's provisioner, and no file but the three.
	var files []string
	_ = filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(out, p)
			files = append(files, rel)
			if st, _ := d.Info(); st.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v", rel, st.Mode().Perm())
			}
		}
		return nil
	})
	if strings.Join(files, " ") != "certs/root_ca.crt config/ca.json config/mcpca.json" {
		t.Fatalf("exported files: %v", files)
	}
	stepCfg, _ := os.ReadFile(filepath.Join(out, "config", "ca.json"))
	if strings.Count(string(stepCfg), `"encryptedKey"`) != 1 || strings.Contains(string(stepCfg), `"admin"`) || strings.Contains(string(stepCfg), "team-b") {
		t.Fatalf("exported ca.json holds more than team-a's key:\n%s", stepCfg)
	}
	tok, err := ca.MintToken(out, teamPW, ca.TokenRequest{Kind: identity.KindClient, Name: "team-a-bot", Roles: []string{"reader"}, TTL: time.Hour, Provisioner: "team-a"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.EnrollToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := ca.MintRevokeToken(out, teamPW, "team-a", cert.Leaf.SerialNumber.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Revoke(context.Background(), cert.Leaf.SerialNumber.String(), rt, "test"); err != nil {
		t.Fatal(err)
	}
	// The admin key is not there to mint with.
	_, err = ca.MintToken(out, c.Password, ca.TokenRequest{Kind: identity.KindClient, Name: "ceo", Roles: []string{"admin"}})
	if err == nil || !strings.Contains(err.Error(), `ca: provisioner "admin" has no mcpca policy in `) {
		t.Fatalf("minting as admin from the export: %v", err)
	}
	_, err = c.EnrollToken(tok)
	wantAPIError(t, err, http.StatusUnauthorized, "token already used")

	for _, tc := range []struct{ name, msg string }{
		{"admin", `ca: provisioner "admin" is the CA's own, unrestricted: give a team a provisioner of its own (mcpca provisioner add NAME --provisioner-password-file F) and export that`},
		{"team-b", `ca: provisioner "team-b" has no password of its own: its key is encrypted with the CA password, which the team would need; add a provisioner with --provisioner-password-file`},
		{"nobody", `ca: no provisioner "nobody" in `},
		{"team-a", "ca: " + out + " already exists: export into a new directory"},
	} {
		if err := ca.ExportProvisioner(c.Dir, tc.name, out); err == nil || !strings.HasPrefix(err.Error(), tc.msg) {
			t.Errorf("export %s: %v, want %q", tc.name, err, tc.msg)
		}
	}
}
