package main

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/internal/testca"
)

const explainPolicy = `@id("readers-search")
permit(principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource == Mcp::Tool::"search");

permit(principal in Mcp::Role::"reader", action == Mcp::Action::"resources/read", resource is Mcp::Resource)
when { resource.uri like "file:///docs/*" };

@id("no-refunds-for-interns")
forbid(principal in Mcp::Role::"intern", action, resource == Mcp::Tool::"refund");

permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"refund")
when { principal.attrs.team == "payments" && context.hour >= 9 && context.hour < 17 };

permit(principal, action == Mcp::Action::"tools/list", resource);
`

func writePolicyFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	writePolicyFile(t, dir, "good.cedar", explainPolicy)
	writePolicyFile(t, dir, "args.cedar", `permit(principal, action == Mcp::Action::"tools/call", resource) when { context.args.n < 3 };`)
	writePolicyFile(t, dir, "bad.cedar", "permit(principal, action == Mcp::Action::\"tools/cal\", resource);\n\npermit(principal is Mcp::Usr, action, resource);\n")
	writePolicyFile(t, dir, "syntax.cedar", "permit(principal, action, resource)\nwhen { principal.attrs.team == \"x\" \n")

	r := ok(t, dir, "policy", "check", "good.cedar")
	if r.stdout != "OK: 5 policies in 1 file, 1 warning\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	// The refund permit reads principal.attrs.team unguarded: a warning
	// naming the policy's position, not an error unless --strict.
	unguarded := "good.cedar:10:1: warning: principal.attrs.team is read without `has` guarding it (a certificate may not carry attribute team): guard it, e.g. `principal.attrs has team && ...`\n"
	if r.stderr != unguarded {
		t.Errorf("stderr %q, want %q", r.stderr, unguarded)
	}
	r = fails(t, dir, "mcpca: policy check failed: 1 warning (--strict)", "policy", "check", "--strict", "good.cedar")
	if r.code != 1 || !strings.HasPrefix(r.stderr, unguarded) {
		t.Errorf("--strict: exit %d, stderr %q", r.code, r.stderr)
	}
	r = ok(t, dir, "policy", "check", "--tool-args", "good.cedar", "args.cedar")
	if r.stdout != "OK: 6 policies in 2 files, 2 warnings\n" || !strings.Contains(r.stderr, "args.cedar:1:1: warning: context.args.n is read without `has` guarding it (a call may not pass argument n)") {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}

	r = fails(t, dir, "mcpca: policy check failed: 4 errors", "policy", "check", "good.cedar", "bad.cedar", "syntax.cedar", "args.cedar")
	want := []string{
		`bad.cedar:1:42: unknown action Mcp::Action::"tools/cal": expected an MCP method such as "tools/call", "resources/read" or "prompts/get"`,
		`bad.cedar:3:21: unknown entity type Mcp::Usr: expected one of Mcp::Action, Mcp::Client, Mcp::Prompt, Mcp::Resource, Mcp::Role, Mcp::Server, Mcp::Tool, Mcp::TrustDomain`,
		`syntax.cedar:3:1: syntax error: expected "}", got end of input`,
		`args.cedar:1:80: context.args is not available: tool arguments reach policies only when enabled (policy.WithToolArguments)`,
	}
	got := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if r.code != 1 || len(got) != len(want)+1 {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	for i, w := range want {
		if got[i] != w {
			t.Errorf("line %d:\n got %s\nwant %s", i+1, got[i], w)
		}
	}
	if r.stdout != "" {
		t.Errorf("stdout on failure: %q", r.stdout)
	}
	fails(t, dir, "policy: reading policy file: open missing.cedar: no such file or directory", "policy", "check", "missing.cedar")
	fails(t, dir, "requires at least 1 arg", "policy", "check")
}

// TestPolicyCheckCookbook checks every example policy file of
// scripts/policies, each on its own, and the numbered cookbook files
// together, given as files and as a directory.
func TestPolicyCheckCookbook(t *testing.T) {
	all, _ := filepath.Glob("../../scripts/policies/*.cedar")
	for _, f := range all {
		if r := ok(t, ".", "policy", "check", f); r.stdout != "OK: "+strings.TrimPrefix(r.stdout, "OK: ") || !strings.HasSuffix(r.stdout, " in 1 file\n") {
			t.Errorf("%s: %q", f, r.stdout)
		}
	}
	files, _ := filepath.Glob("../../scripts/policies/[0-9][0-9]-*.cedar")
	if len(files) < 5 {
		t.Fatalf("cookbook: %v", files)
	}
	r := ok(t, ".", append([]string{"policy", "check"}, files...)...)
	if !strings.HasPrefix(r.stdout, "OK: ") || !strings.HasSuffix(r.stdout, fmt.Sprintf(" in %d files\n", len(files))) {
		t.Errorf("stdout %q", r.stdout)
	}
	dir := t.TempDir()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		writePolicyFile(t, dir, filepath.Base(f), string(data))
	}
	if r2 := ok(t, dir, "policy", "check", "."); r2.stdout != r.stdout {
		t.Errorf("directory: %q, files: %q", r2.stdout, r.stdout)
	}
}

func TestPolicyExplain(t *testing.T) {
	dir := t.TempDir()
	ca := testca.NewCA(t, "acme.test")
	intern := ca.CreateSVID("spiffe://acme.test/client/ivan",
		testca.WithRoles("reader", "intern"), testca.WithAttributes(map[string]string{"team": "payments"}))
	alice := ca.CreateSVID("spiffe://acme.test/client/alice",
		testca.WithRoles("reader"), testca.WithAttributes(map[string]string{"team": "payments"}))
	for name, s := range map[string]*testca.SVID{"ivan.pem": intern, "alice.pem": alice} {
		writePolicyFile(t, dir, name, string(s.ChainPEM()))
	}
	writePolicyFile(t, dir, "p.cedar", explainPolicy)

	r := ok(t, dir, "policy", "explain", "--cert", "ivan.pem", "--policy", "p.cedar",
		"--tool", "search", "--tool", "refund", "--tool", "delete",
		"--resource", "file:///docs/a.md", "--prompt", "summarize", "--method", "tools/list", "--method", "ping",
		"--at", "2026-03-04T10:30:00Z", "--source", "10.0.0.1")
	want := `Principal:  Mcp::Client::"spiffe://acme.test/client/ivan"
Auth:       mtls
Roles:      reader, intern
Attributes: team=payments

allow  tools/call search
       permitted by readers-search (p.cedar:1:1)
deny   tools/call refund
       forbidden by no-refunds-for-interns (p.cedar:7:1)
deny   tools/call delete
       no policy permits
allow  resources/read file:///docs/a.md
       permitted by p.cedar:4:1
deny   prompts/get summarize
       no policy permits
allow  tools/list
       permitted by p.cedar:13:1
allow  ping
       always allowed
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}

	// Business hours: allowed at 10:30, not at 18:00.
	r = ok(t, dir, "policy", "explain", "--cert", "alice.pem", "--policy", "p.cedar", "--tool", "refund", "--at", "2026-03-04T10:30:00Z")
	if !strings.Contains(r.stdout, "allow  tools/call refund\n       permitted by p.cedar:10:1\n") {
		t.Errorf("10:30: %s", r.stdout)
	}
	r = ok(t, dir, "policy", "explain", "--cert", "alice.pem", "--policy", "p.cedar", "--tool", "refund", "--at", "2026-03-04T18:00:00Z")
	if !strings.Contains(r.stdout, "deny   tools/call refund\n       no policy permits\n") {
		t.Errorf("18:00: %s", r.stdout)
	}
	// The same instant in a zone where it is still business hours.
	r = ok(t, dir, "policy", "explain", "--cert", "alice.pem", "--policy", "p.cedar", "--tool", "refund", "--at", "2026-03-04T18:00:00Z", "--time-zone", "America/New_York")
	if !strings.Contains(r.stdout, "allow  tools/call refund") {
		t.Errorf("18:00 UTC in New York: %s", r.stdout)
	}
	// A policy that fails to evaluate for this principal is reported.
	bob := ca.CreateSVID("spiffe://acme.test/client/bob")
	writePolicyFile(t, dir, "bob.pem", string(bob.ChainPEM()))
	r = ok(t, dir, "policy", "explain", "--cert", "bob.pem", "--policy", "p.cedar", "--tool", "refund", "--at", "2026-03-04T10:30:00Z")
	if !strings.Contains(r.stdout, "deny   tools/call refund\n       no policy permits\n       skipped, evaluation error in p.cedar:10: ") {
		t.Errorf("evaluation error not shown: %s", r.stdout)
	}
}

func TestPolicyExplainFailures(t *testing.T) {
	dir := t.TempDir()
	ca := testca.NewCA(t, "acme.test")
	writePolicyFile(t, dir, "a.pem", string(ca.CreateSVID("spiffe://acme.test/client/a").ChainPEM()))
	writePolicyFile(t, dir, "root.pem", string(ca.RootsPEM()))
	writePolicyFile(t, dir, "p.cedar", explainPolicy)
	writePolicyFile(t, dir, "bad.cedar", `permit(principal, action == Mcp::Action::"tools/cal", resource);`)
	writePolicyFile(t, dir, "junk.pem", "hello")
	writePolicyFile(t, dir, "t.jwt", unsignedJWT(`{"iss":"https://as.acme.test","aud":"x"}`))
	tests := []struct {
		msg  string
		args []string
	}{
		{"mcpca: policy explain needs --cert or --token (one of them) and at least one --policy", []string{"--policy", "p.cedar", "--tool", "x"}},
		{"mcpca: policy explain needs --cert or --token (one of them) and at least one --policy", []string{"--cert", "a.pem", "--token", "t.jwt", "--policy", "p.cedar", "--tool", "x"}},
		{"mcpca: t.jwt: oauth: invalid_token: no sub claim: the token names no principal", []string{"--token", "t.jwt", "--policy", "p.cedar", "--tool", "x"}},
		{"mcpca: junk.pem: oauth: invalid_token: not a JWT (three dot-separated parts)", []string{"--token", "junk.pem", "--policy", "p.cedar", "--tool", "x"}},
		{"mcpca: nothing to explain: pass --tool, --resource, --prompt or --method", []string{"--cert", "a.pem", "--policy", "p.cedar"}},
		{"mcpca: reading certificate: open missing.pem: no such file or directory", []string{"--cert", "missing.pem", "--policy", "p.cedar", "--tool", "x"}},
		{"mcpca: junk.pem: no PEM certificate found", []string{"--cert", "junk.pem", "--policy", "p.cedar", "--tool", "x"}},
		{"mcpca: root.pem: identity: certificate is a CA certificate, not a leaf", []string{"--cert", "root.pem", "--policy", "p.cedar", "--tool", "x"}},
		{"mcpca: --at: want an RFC 3339 time", []string{"--cert", "a.pem", "--policy", "p.cedar", "--tool", "x", "--at", "tomorrow"}},
		{"mcpca: --source: ", []string{"--cert", "a.pem", "--policy", "p.cedar", "--tool", "x", "--source", "nowhere"}},
		{"mcpca: --time-zone: ", []string{"--cert", "a.pem", "--policy", "p.cedar", "--tool", "x", "--time-zone", "Mars/Olympus"}},
		{"bad.cedar:1:42: unknown action", []string{"--cert", "a.pem", "--policy", "bad.cedar", "--tool", "x"}},
	}
	for _, tt := range tests {
		r := fails(t, dir, tt.msg, append([]string{"policy", "explain"}, tt.args...)...)
		if r.code != 1 {
			t.Errorf("%v: exit %d", tt.args, r.code)
		}
	}
	r := fails(t, dir, "mcpca: the policy files do not check; fix them first (see mcpca policy check)", "policy", "explain", "--cert", "a.pem", "--policy", "bad.cedar", "--tool", "x")
	if r.stdout != "" {
		t.Errorf("stdout: %q", r.stdout)
	}
}

func TestAuditVerify(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"search", "refund", "delete", "fetch"} {
		if err := l.Write(audit.Record{SPIFFEID: "spiffe://acme.test/client/a", Method: "tools/call", Target: tool, Decision: "deny"}); err != nil {
			t.Fatal(err)
		}
	}
	seq, hash := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	r := ok(t, dir, "audit", "verify", "audit.log")
	if r.stdout != "OK: 4 records, hash chain intact\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	head := fmt.Sprintf("%d:%s", seq, hash)
	if r := ok(t, dir, "audit", "verify", "audit.log", "--head", head); r.stdout != "OK: 4 records, hash chain intact, head matches\n" {
		t.Errorf("--head: stdout %q", r.stdout)
	}
	// Cut at a record boundary: the chain is intact, the head catches it.
	data0, _ := os.ReadFile(path)
	cut := strings.SplitAfter(string(data0), "\n")
	writePolicyFile(t, dir, "cut.log", cut[0]+cut[1]+cut[2])
	ok(t, dir, "audit", "verify", "cut.log")
	r = fails(t, dir, "mcpca: cut.log: audit: line 4: the log ends at seq 3, before the recorded head seq 4: records were removed from its end", "audit", "verify", "cut.log", "--head", head)
	if r.code != 1 {
		t.Errorf("exit %d", r.code)
	}
	fails(t, dir, `mcpca: --head: audit: head "4": want SEQ:HASH, e.g. 42:`, "audit", "verify", "audit.log", "--head", "4")

	data, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(data), "\n")
	writePolicyFile(t, dir, "edited.log", lines[0]+strings.Replace(lines[1], `"decision":"deny"`, `"decision":"allow"`, 1)+lines[2]+lines[3])
	writePolicyFile(t, dir, "deleted.log", lines[0]+lines[2]+lines[3])
	writePolicyFile(t, dir, "reordered.log", lines[0]+lines[2]+lines[1]+lines[3])
	writePolicyFile(t, dir, "truncated.log", lines[0]+lines[1]+lines[2][:30])
	for _, tt := range []struct{ file, msg string }{
		{"edited.log", "mcpca: edited.log: audit: line 2: record was edited: its hash does not match the prev of line 3"},
		{"deleted.log", "mcpca: deleted.log: audit: line 2: seq 3 follows seq 1: records deleted"},
		{"reordered.log", "mcpca: reordered.log: audit: line 2: seq 3 comes before seq 2: records reordered"},
		{"truncated.log", "mcpca: truncated.log: audit: line 3: incomplete last record (no newline): the log was truncated"},
		{"missing.log", "mcpca: open missing.log: no such file or directory"},
	} {
		r := fails(t, dir, tt.msg, "audit", "verify", tt.file)
		if r.code != 1 || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q", tt.file, r.code, r.stdout)
		}
	}
}

// unsignedJWT is a JWT of claims with a dummy signature: explain does not
// check signatures.
func unsignedJWT(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"ES256","typ":"at+jwt"}`)) + "." + enc([]byte(claims)) + "." + enc([]byte("sig"))
}

// TestPolicyExplainToken: a token maps to the principal a certificate of
// the same SPIFFE ID gives, and context.auth says token or bound-token.
func TestPolicyExplainToken(t *testing.T) {
	dir := t.TempDir()
	pol, err := os.ReadFile("../../scripts/policies/auth-methods.cedar")
	if err != nil {
		t.Fatal(err)
	}
	writePolicyFile(t, dir, "auth.cedar", string(pol))
	writePolicyFile(t, dir, "plain.jwt", unsignedJWT(`{"iss":"https://as.acme.test","sub":"alice","aud":"https://mcp.test/mcp","exp":1,"roles":["reader","admin"],"attrs":{"team":"ops"},"client_id":"alice"}`))
	writePolicyFile(t, dir, "bound.jwt", unsignedJWT(`{"iss":"https://as.acme.test","sub":"spiffe://acme.test/client/alice","aud":"https://mcp.test/mcp","roles":["admin"],"cnf":{"x5t#S256":"`+oauth.Thumbprint([]byte("c"))+`"}}`))
	r := ok(t, dir, "policy", "explain", "--token", "plain.jwt", "--token-trust-domain", "acme.test", "--policy", "auth.cedar", "--tool", "whoami", "--tool", "delete_record")
	want := `Principal:  Mcp::Client::"spiffe://acme.test/client/alice"
Auth:       token
Roles:      reader, admin
Attributes: oauth.client_id=alice, oauth.issuer=https://as.acme.test, team=ops

allow  tools/call whoami
       permitted by auth-readers-read-only (auth.cedar:11:1)
deny   tools/call delete_record
       no policy permits
`
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = ok(t, dir, "policy", "explain", "--token", "bound.jwt", "--token-trust-domain", "acme.test", "--policy", "auth.cedar", "--tool", "delete_record")
	if !strings.Contains(r.stdout, "Auth:       bound-token\n") || !strings.Contains(r.stdout, "allow  tools/call delete_record\n       permitted by auth-admins-delete-with-a-key") {
		t.Errorf("bound token:\n%s", r.stdout)
	}
	fails(t, dir, "mcpca: bound.jwt: oauth: invalid_token: subject spiffe://acme.test/client/alice is outside the trust domain as.acme.test that issuer https://as.acme.test speaks for",
		"policy", "explain", "--token", "bound.jwt", "--policy", "auth.cedar", "--tool", "x")
}
