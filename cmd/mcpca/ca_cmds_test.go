package main

import (
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestCLIEnrolRenewRevokeEndToEnd(t *testing.T) {
	ca := startServedCA(t)
	w := ca.dir
	tok := strings.TrimSpace(ok(t, w, "token", "reporter", "--dir", "pki", "--role", "reader", "--attr", "team=payments", "--attr", "env=prod", "--ttl", "1h").stdout)
	if strings.Count(tok, ".") != 2 || strings.Contains(tok, "\n") {
		t.Fatalf("token stdout is not just the token: %q", tok)
	}
	// An unwritable destination is found before the token is spent (a
	// file where the directory should be: tests run as root).
	writeFile(t, filepath.Join(w, "nodir"), "x", 0o600)
	fails(t, w, "cannot write nodir/reporter.key: not a directory (the token was not used)", "enroll", "--token", tok, "--ca-url", ca.url, "--root", ca.root, "--cert", "reporter.crt", "--key", "nodir/reporter.key")
	fails(t, w, "(the token was not used)", "enroll", "--token", tok, "--ca-url", ca.url, "--root", ca.root, "--cert", "pki", "--key", "reporter.key")
	r := ok(t, w, "enroll", "--token", tok, "--ca-url", ca.url, "--root", ca.root, "--cert", "reporter.crt", "--key", "reporter.key")
	if !strings.Contains(r.stderr, "Enrolled spiffe://acme.test/client/reporter") {
		t.Fatalf("enroll said: %s", r.stderr)
	}
	st, err := os.Stat(filepath.Join(w, "reporter.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", err, st)
	}
	var info inspectOutput
	if err := json.Unmarshal([]byte(ok(t, w, "inspect", "reporter.crt", "--json").stdout), &info); err != nil {
		t.Fatal(err)
	}
	if info.SPIFFEID != "spiffe://acme.test/client/reporter" || len(info.Roles) != 1 || info.Roles[0] != "reader" || info.Attributes["team"] != "payments" || info.Expired {
		t.Fatalf("inspect: %+v", info)
	}
	// Replay of the same token.
	fails(t, w, "token already used", "enroll", "--token", tok, "--ca-url", ca.url, "--root", ca.root, "--cert", "x.crt", "--key", "x.key")
	if _, err := os.Stat(filepath.Join(w, "x.key")); err == nil {
		t.Fatal("a refused enrolment left a key file")
	}
	ok(t, w, "renew", "--cert", "reporter.crt", "--key", "reporter.key", "--ca-url", ca.url, "--root", ca.root)
	var renewed inspectOutput
	_ = json.Unmarshal([]byte(ok(t, w, "inspect", "reporter.crt", "--json").stdout), &renewed)
	if renewed.Serial == info.Serial || renewed.SPIFFEID != info.SPIFFEID || renewed.Attributes["env"] != "prod" {
		t.Fatalf("renewed: %+v", renewed)
	}
	// Operator revocation by serial, through the running CA, with the serial
	// as audit logs show it (hex, given with 0x); a malformed serial is
	// refused before anything is sent.
	fails(t, w, `--serial "12ab" is not a serial number`, "revoke", "--serial", "12ab", "--dir", "pki", "--ca-url", ca.url)
	if n, ok := new(big.Int).SetString(renewed.SerialHex, 16); !ok || n.String() != renewed.Serial {
		t.Fatalf("inspect: serial %s, serial_hex %s", renewed.Serial, renewed.SerialHex)
	}
	r = ok(t, w, "revoke", "--serial", "0x"+renewed.SerialHex, "--dir", "pki", "--ca-url", ca.url, "--reason", "test")
	if want := "Revoked serial " + renewed.Serial + " (0x" + renewed.SerialHex + ")"; !strings.Contains(r.stderr, want) {
		t.Fatalf("revoke said %q, want %q", r.stderr, want)
	}
	fails(t, w, "certificate has been revoked", "renew", "--cert", "reporter.crt", "--key", "reporter.key", "--ca-url", ca.url, "--root", ca.root)

	// A server identity; holder revocation.
	stok := strings.TrimSpace(ok(t, w, "token", "files", "--server", "--dns", "files.acme.test", "--dir", "pki", "--role", "mcp-server").stdout)
	ok(t, w, "enroll", "--token", stok, "--ca-url", ca.url, "--root", ca.root, "--cert", "files.crt", "--key", "files.key")
	out := ok(t, w, "inspect", "files.crt").stdout
	if !strings.Contains(out, "spiffe://acme.test/server/files") || !strings.Contains(out, "files.acme.test") {
		t.Fatalf("inspect: %s", out)
	}
	ok(t, w, "revoke", "--cert", "files.crt", "--key", "files.key", "--ca-url", ca.url, "--root", ca.root)
	fails(t, w, "revoked", "renew", "--cert", "files.crt", "--key", "files.key", "--ca-url", ca.url, "--root", ca.root)

	// The log has one JSON line per issuance, renewal and revocation, and no token.
	logs := ca.stderr.String()
	for _, ev := range []string{`"event":"issue"`, `"event":"renew"`, `"event":"revoke"`} {
		if !strings.Contains(logs, ev) {
			t.Fatalf("no %s in log:\n%s", ev, logs)
		}
	}
	if strings.Contains(logs, tok[:20]) {
		t.Fatal("the log holds a token")
	}
}

func TestCLIBootstrapAndProvisionerReload(t *testing.T) {
	ca := startServedCA(t)
	w := ca.dir
	r := ok(t, w, "bootstrap", "--ca-url", ca.url, "--fingerprint", ca.fingerprint, "--out", "root.crt")
	if !strings.Contains(r.stderr, "Wrote the root") {
		t.Fatalf("bootstrap: %s", r.stderr)
	}
	got, _ := os.ReadFile(filepath.Join(w, "root.crt"))
	want, _ := os.ReadFile(ca.root)
	if string(got) != string(want) {
		t.Fatal("bootstrapped root differs from the CA's")
	}
	wrong := strings.Repeat("ab", 32)
	fails(t, w, "has no root with fingerprint "+wrong, "bootstrap", "--ca-url", ca.url, "--fingerprint", wrong, "--out", "bad.crt")
	if _, err := os.Stat(filepath.Join(w, "bad.crt")); err == nil {
		t.Fatal("a refused bootstrap wrote a file")
	}

	r = ok(t, w, "provisioner", "add", "team-a", "--dir", "pki", "--allow-role", "reader", "--allow-name", "client/team-a-*")
	if !regexp.MustCompile(`Asked the running CA \(pid \d+\) to reload`).MatchString(r.stderr) || r.stdout != "" {
		t.Fatalf("provisioner add: stdout %q stderr %q", r.stdout, r.stderr)
	}
	// The running CA reloads asynchronously on SIGHUP: wait for its log line.
	waitFor(t, func() bool { return strings.Contains(ca.stderr.String(), `"event":"reload"`) }, ca.stderr.String)
	tok := strings.TrimSpace(ok(t, w, "token", "team-a-bot", "--dir", "pki", "--provisioner", "team-a", "--role", "reader").stdout)
	ok(t, w, "enroll", "--token", tok, "--ca-url", ca.url, "--root", ca.root, "--cert", "bot.crt", "--key", "bot.key")
	fails(t, w, `provisioner "team-a" may not grant role "admin" (allowed: reader)`, "token", "team-a-bot", "--dir", "pki", "--provisioner", "team-a", "--role", "admin")
	fails(t, w, `may not issue for name "client/other"`, "token", "other", "--dir", "pki", "--provisioner", "team-a")
	out := ok(t, w, "provisioner", "list", "--dir", "pki").stdout
	if !strings.Contains(out, "team-a\troles [reader]") || !strings.Contains(out, "admin\tadmin") {
		t.Fatalf("list: %s", out)
	}
}

func TestCLIBadInput(t *testing.T) {
	ca := startServedCA(t)
	w := ca.dir
	fails(t, w, "pki/ca.lock is locked by another mcpca serve (pid ", "serve", "--dir", "pki")
	fails(t, w, "--certificate-retention -1h0m0s: must not be negative", "serve", "--dir", "pki", "--certificate-retention", "-1h")
	if err := os.WriteFile(filepath.Join(w, "wrong.txt"), []byte("nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(t, w, `the password does not decrypt the key of provisioner "admin": wrong password?`, "token", "a", "--dir", "pki", "--password-file", "wrong.txt")
	fails(t, w, "does not exist: is nothere a CA directory made by `mcpca init`?", "token", "a", "--dir", "nothere", "--password-file", "wrong.txt")
	fails(t, w, "33 roles, the limit is 32", append([]string{"token", "a", "--dir", "pki"}, manyRoles(33)...)...)
	fails(t, w, `invalid attribute key "Team"`, "token", "a", "--dir", "pki", "--attr", "Team=x")
	fails(t, w, `attribute "team" given twice`, "token", "a", "--dir", "pki", "--attr", "team=x", "--attr", "team=y")
	fails(t, w, "--dns and --ip are for server identities: add --server", "token", "a", "--dir", "pki", "--dns", "x.test")
	fails(t, w, "certificate lifetime 48h0m0s is outside the CA's limits", "token", "a", "--dir", "pki", "--ttl", "48h")
	fails(t, w, "the token is not a JWT", "enroll", "--token", "garbage", "--ca-url", ca.url, "--root", ca.root, "--cert", "a.crt", "--key", "a.key")
	fails(t, w, "missing --root", "enroll", "--token", "a.b.c", "--ca-url", ca.url, "--cert", "a.crt", "--key", "a.key")
	fails(t, w, "is not a SHA-256 in hex", "bootstrap", "--ca-url", ca.url, "--fingerprint", "xyz", "--out", "r.crt")
	// A token for another CA (other key, other audience).
	other := startServedCA(t)
	otok := strings.TrimSpace(ok(t, other.dir, "token", "x", "--dir", "pki").stdout)
	fails(t, w, "token rejected", "enroll", "--token", otok, "--ca-url", ca.url, "--root", ca.root, "--cert", "a.crt", "--key", "a.key")
	// Talking to a CA with the wrong root.
	fails(t, w, "does not chain to the given root", "enroll", "--token", otok, "--ca-url", ca.url, "--root", other.root, "--cert", "a.crt", "--key", "a.key")
	// Corrupted configuration.
	if err := os.WriteFile(filepath.Join(other.dir, "pki", "config", "mcpca.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	fails(t, other.dir, "mcpca.json is corrupted", "token", "x", "--dir", "pki")
}

func manyRoles(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, "--role", "r"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	return out
}

// `mcpca revoke --identity` revokes every certificate of a SPIFFE ID at
// once, through the running CA; none of them renews again.
func TestCLIRevokeIdentity(t *testing.T) {
	ca := startServedCA(t)
	w := ca.dir
	for _, name := range []string{"a", "b"} {
		tok := strings.TrimSpace(ok(t, w, "token", "reporter", "--dir", "pki", "--ttl", "1h").stdout)
		ok(t, w, "enroll", "--token", tok, "--ca-url", ca.url, "--root", ca.root, "--cert", name+".crt", "--key", name+".key")
	}
	ok(t, w, "renew", "--cert", "a.crt", "--key", "a.key", "--ca-url", ca.url, "--root", ca.root)
	fails(t, w, "give one of --serial or --identity (operator) or --cert/--key (holder)", "revoke", "--identity", "spiffe://acme.test/client/reporter", "--serial", "12", "--dir", "pki")
	fails(t, w, "--identity needs --dir", "revoke", "--identity", "spiffe://acme.test/client/reporter", "--ca-url", ca.url, "--root", ca.root)
	r := ok(t, w, "revoke", "--identity", "spiffe://acme.test/client/reporter", "--dir", "pki", "--reason", "host lost")
	if !strings.Contains(r.stderr, "Revoked identity spiffe://acme.test/client/reporter: 3 certificate(s)") {
		t.Fatalf("revoke --identity said %q", r.stderr)
	}
	if n := len(strings.Fields(r.stdout)); n != 6 { // "serial (0xhex)" per line
		t.Fatalf("revoke --identity printed %q, want the 3 serials", r.stdout)
	}
	for _, name := range []string{"a", "b"} {
		fails(t, w, "certificate has been revoked", "renew", "--cert", name+".crt", "--key", name+".key", "--ca-url", ca.url, "--root", ca.root)
	}
}
