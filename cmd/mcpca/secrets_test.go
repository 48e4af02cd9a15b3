package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const weakAdvice = ": use at least 12 characters, 6 of them different, not a common password or a keyboard run; random words or `openssl rand -base64 24` will do. --insecure-password accepts it anyway, but whoever obtains an encrypted key can then guess the password offline\n"

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func TestCLIInitRefusesWeakPasswords(t *testing.T) {
	w := t.TempDir()
	initArgs := func(dir, pw string, extra ...string) []string {
		return append([]string{"init", "--dir", dir, "--name", "X", "--trust-domain", "x.test", "--address", "127.0.0.1:9", "--password-file", pw}, extra...)
	}
	for _, tc := range []struct{ content, why string }{
		{"password\n", "8 characters"},
		{"a\n", "1 character"},
		{" \n", "1 character"},
		{"aaaaaaaaaaaaaaaa\n", "only 1 different character"},
		{"password1234\n", "a common password"},
	} {
		writeFile(t, filepath.Join(w, "weak.pw"), tc.content, 0o600)
		r := runIn(t, w, initArgs("pki", "weak.pw")...)
		if want := "mcpca: ca: init: weak password (" + tc.why + ")" + weakAdvice; r.code == 0 || r.stderr != want {
			t.Fatalf("init with %q: exit %d, stderr %q, want %q", tc.content, r.code, r.stderr, want)
		}
		if _, err := os.Stat(filepath.Join(w, "pki")); err == nil {
			t.Fatal("a refused init created the directory")
		}
	}
	// --insecure-password overrides; a file others can read is named.
	writeFile(t, filepath.Join(w, "weak.pw"), "password\n", 0o644)
	r := ok(t, w, initArgs("pki", "weak.pw", "--insecure-password")...)
	if want := "mcpca: warning: weak.pw is readable by group/others (mode 0644): chmod 600 it\n"; !strings.HasPrefix(r.stderr, want) {
		t.Fatalf("stderr %q, want it to start with %q", r.stderr, want)
	}
	if !strings.Contains(r.stderr, "root key:         pki/secrets/root_ca_key; serve never uses it: move it offline (e.g. mv pki/secrets/root_ca_key /media/offline/)") {
		t.Fatalf("init does not say how to take the root key offline:\n%s", r.stderr)
	}
	// --root-key-out writes the root key outside the CA directory.
	writeFile(t, filepath.Join(w, "good.pw"), "tangerine volcano staple orbit\n", 0o600)
	r = ok(t, w, initArgs("pki2", "good.pw", "--root-key-out", "root.key", "--publish-encrypted-keys")...)
	if strings.Contains(r.stderr, "warning") || len(strings.TrimSpace(r.stdout)) != 64 {
		t.Fatalf("stdout %q stderr %q", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "root key:         ") || !strings.Contains(r.stderr, "root.key (outside the CA directory; serve never uses it: keep it offline)") {
		t.Fatalf("init output:\n%s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(w, "root.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w, "pki2", "secrets", "root_ca_key")); !os.IsNotExist(err) {
		t.Fatalf("root key in secrets/: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(w, "pki2", "config", "mcpca.json"))
	var s struct {
		Publish bool `json:"publishEncryptedKeys"`
	}
	if err := json.Unmarshal(b, &s); err != nil || !s.Publish {
		t.Fatalf("--publish-encrypted-keys: %v %s", err, b)
	}
}

// A team given its provisioner's own password mints and revokes with it,
// without the CA password; that password does not decrypt the admin key.
func TestCLIProvisionerOwnPassword(t *testing.T) {
	ca := startServedCA(t)
	w := ca.dir
	if !strings.Contains(ca.stderr.String(), `"event":"root_key_online","file":"pki/secrets/root_ca_key"`) {
		t.Fatalf("serve does not warn about the root key in secrets/:\n%s", ca.stderr.String())
	}
	add := []string{"provisioner", "add", "team-a", "--dir", "pki", "--allow-role", "reader", "--allow-name", "client/team-a-*", "--provisioner-password-file", "team-a.pw"}
	writeFile(t, filepath.Join(w, "team-a.pw"), "abc\n", 0o600)
	r := runIn(t, w, add...)
	if want := `mcpca: ca: provisioner "team-a": weak password (3 characters)` + weakAdvice; r.code == 0 || r.stderr != want {
		t.Fatalf("weak provisioner password: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
	pw, _ := os.ReadFile(filepath.Join(w, "pki", "secrets", "password"))
	writeFile(t, filepath.Join(w, "team-a.pw"), string(pw), 0o600)
	fails(t, w, `mcpca: ca: provisioner "team-a": its own password is the CA password, which decrypts the admin key too: choose another`, add...)

	writeFile(t, filepath.Join(w, "team-a.pw"), "team-a orbit tangerine 42\n", 0o640)
	r = ok(t, w, add...)
	if want := "mcpca: warning: team-a.pw is readable by group/others (mode 0640): chmod 600 it\n"; !strings.HasPrefix(r.stderr, want) || r.stdout != "" {
		t.Fatalf("stdout %q, stderr %q, want it to start with %q", r.stdout, r.stderr, want)
	}
	if !strings.Contains(r.stderr, `Its key is encrypted with the password in team-a.pw: give that file to the team (mcpca token --provisioner team-a --password-file FILE), not the CA password`) {
		t.Fatalf("provisioner add: %s", r.stderr)
	}
	waitFor(t, func() bool { return strings.Contains(ca.stderr.String(), `"event":"reload"`) }, ca.stderr.String)
	if out := ok(t, w, "provisioner", "list", "--dir", "pki").stdout; !strings.Contains(out, "team-a\troles [reader] attribute keys [] names [client/team-a-*] key encrypted with its own password") {
		t.Fatalf("list: %s", out)
	}
	// The team does not have the CA password.
	if err := os.Rename(filepath.Join(w, "pki", "secrets", "password"), filepath.Join(w, "ca.pw")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(w, "team-a.pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = ok(t, w, "token", "team-a-bot", "--dir", "pki", "--provisioner", "team-a", "--role", "reader", "--password-file", "team-a.pw")
	if r.stderr != "" {
		t.Fatalf("stderr %q", r.stderr)
	}
	writeFile(t, filepath.Join(w, "tok"), r.stdout, 0o644)
	r = ok(t, w, "enroll", "--token-file", "tok", "--ca-url", ca.url, "--root", ca.root, "--cert", "bot.crt", "--key", "bot.key")
	if !strings.Contains(r.stderr, "mcpca: warning: tok is readable by group/others (mode 0644): chmod 600 it\n") {
		t.Fatalf("enroll --token-file: %s", r.stderr)
	}
	fails(t, w, `mcpca: ca: the password does not decrypt the key of provisioner "admin": wrong password?`, "token", "ceo", "--dir", "pki", "--role", "admin", "--password-file", "team-a.pw")
	fails(t, w, `mcpca: ca: the password does not decrypt the key of provisioner "team-a": it has its own password (set by provisioner add --provisioner-password-file), not the CA password: pass that file with --password-file`,
		"token", "team-a-bot", "--dir", "pki", "--provisioner", "team-a", "--password-file", "ca.pw")
	var info inspectOutput
	if err := json.Unmarshal([]byte(ok(t, w, "inspect", "bot.crt", "--json").stdout), &info); err != nil {
		t.Fatal(err)
	}
	r = ok(t, w, "revoke", "--serial", info.Serial, "--dir", "pki", "--provisioner", "team-a", "--password-file", "team-a.pw")
	if !strings.Contains(r.stderr, "Revoked serial "+info.Serial) {
		t.Fatalf("revoke: %s", r.stderr)
	}
	// The team's own directory: only its provisioner.
	r = ok(t, w, "provisioner", "export", "team-a", "--dir", "pki", "--out", "team-a-pki")
	if !strings.Contains(r.stderr, "Wrote team-a-pki for provisioner team-a") {
		t.Fatalf("export: %s", r.stderr)
	}
	r = ok(t, w, "token", "team-a-bot2", "--dir", "team-a-pki", "--provisioner", "team-a", "--role", "reader", "--password-file", "team-a.pw")
	writeFile(t, filepath.Join(w, "tok2"), r.stdout, 0o600)
	ok(t, w, "enroll", "--token-file", "tok2", "--ca-url", ca.url, "--root", filepath.Join("team-a-pki", "certs", "root_ca.crt"), "--cert", "bot2.crt", "--key", "bot2.key")
	fails(t, w, `mcpca: ca: provisioner "admin" is the CA's own, unrestricted`, "provisioner", "export", "admin", "--dir", "pki", "--out", "admin-pki")

	// Adding a provisioner needs the CA password: the team's is refused.
	writeFile(t, filepath.Join(w, "team-b.pw"), "team-b comet lantern 77\n", 0o600)
	fails(t, w, `mcpca: ca: the password does not decrypt the key of provisioner "admin": wrong password?`,
		"provisioner", "add", "team-b", "--dir", "pki", "--allow-name", "client/team-b-*", "--password-file", "team-a.pw", "--provisioner-password-file", "team-b.pw")
}

// The agent names a token file others can read in its log.
func TestCLIAgentWarnsAboutExposedTokenFile(t *testing.T) {
	w := t.TempDir()
	writeFile(t, filepath.Join(w, "web.token"), "a.b.c\n", 0o644)
	p := startAgent(t, w, "--cert", "cert.pem", "--key", "key.pem", "--ca-url", "https://127.0.0.1:1", "--root", "root.pem", "--token-file", "web.token")
	m := p.waitFor(t, "agent: token file web.token is readable by group/others (mode 0644): chmod 600 it", "default")
	if m["level"] != "WARN" || m["event"] != "token_file_exposed" {
		t.Fatalf("log line %v", m)
	}
}
