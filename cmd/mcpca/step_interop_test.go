package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stepModule is smallstep's CLI, the client that step-ca users already
// have: the same version scripts/bench-agent.sh compares the agent with.
const (
	stepModule  = "github.com/smallstep/cli/cmd/step@v0.28.7"
	stepVersion = "v0.28.7"
)

// stepBinary returns smallstep's step CLI, built once into the repository's
// bin/ (where scripts/bench-agent.sh builds it too).
func stepBinary(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(bin, "step")
	// go install stamps no version into step's own "step version"; the
	// module version is in the build information.
	if out, err := exec.Command("go", "version", "-m", path).Output(); err == nil && strings.Contains(string(out), "github.com/smallstep/cli\t"+stepVersion) {
		return path
	}
	t.Logf("building %s into %s (once)", stepModule, bin)
	build := exec.Command("go", "install", stepModule)
	build.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building smallstep's CLI (%s) for the interop test: %v\n%s", stepModule, err, out)
	}
	return path
}

// runStep runs the step CLI in dir with its own STEPPATH; wantOK says
// whether it must succeed. It returns what step printed (stdout + stderr).
func runStep(t *testing.T, step, dir string, wantOK bool, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, step, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "STEPPATH="+filepath.Join(dir, ".step"), "HOME="+dir, "STEP_CONSOLE=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if wantOK && err != nil {
		t.Fatalf("step %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	if !wantOK && err == nil {
		t.Fatalf("step %s succeeded, want a failure:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String()
}

// The CA works with the client step-ca users already have, smallstep's
// step CLI, unchanged: it enrols with an mcpca token (the identity's
// extensions come from the token, not from step), renews over mTLS (roles
// kept), revokes over mTLS, and is refused a replayed token and a renewal
// after revocation with mcpca's messages.
func TestStepCLIInterop(t *testing.T) {
	step := stepBinary(t)
	ca := startServedCA(t)
	w := ca.dir
	flags := []string{"--ca-url", ca.url, "--root", ca.root}

	if out := runStep(t, step, w, true, append([]string{"ca", "health"}, flags...)...); strings.TrimSpace(out) != "ok" {
		t.Fatalf("step ca health: %q", out)
	}
	tok := strings.TrimSpace(ok(t, w, "token", "alice", "--dir", "pki", "--role", "reader", "--attr", "team=payments").stdout)
	const id = "spiffe://acme.test/client/alice"
	runStep(t, step, w, true, append(append([]string{"ca", "certificate", "--token", tok}, flags...), id, "alice.crt", "alice.key")...)
	inspect := func() inspectOutput {
		t.Helper()
		var o inspectOutput
		if err := json.Unmarshal([]byte(ok(t, w, "inspect", "alice.crt", "--json").stdout), &o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	first := inspect()
	if first.SPIFFEID != id || len(first.Roles) != 1 || first.Roles[0] != "reader" || first.Attributes["team"] != "payments" {
		t.Fatalf("the certificate step obtained: %+v", first)
	}
	ok(t, w, "verify", "alice.crt", "--root", ca.root, "--trust-domain", "acme.test")

	// The same token again: refused by the CA, whoever presents it.
	out := runStep(t, step, w, false, append(append([]string{"ca", "certificate", "--token", tok}, flags...), id, "again.crt", "again.key")...)
	if !strings.Contains(out, "token already used") {
		t.Fatalf("replayed token: %s", out)
	}

	// Renewal over mTLS keeps the identity and its roles.
	runStep(t, step, w, true, append(append([]string{"ca", "renew", "--force"}, flags...), "alice.crt", "alice.key")...)
	renewed := inspect()
	if renewed.Serial == first.Serial || renewed.SPIFFEID != id || len(renewed.Roles) != 1 || renewed.Roles[0] != "reader" || renewed.Attributes["team"] != "payments" {
		t.Fatalf("after step ca renew: %+v (before: %+v)", renewed, first)
	}

	// Revocation by the holder over mTLS; then renewal is refused.
	runStep(t, step, w, true, append([]string{"ca", "revoke", "--cert", "alice.crt", "--key", "alice.key"}, flags...)...)
	out = runStep(t, step, w, false, append(append([]string{"ca", "renew", "--force"}, flags...), "alice.crt", "alice.key")...)
	if !strings.Contains(out, "certificate has been revoked") {
		t.Fatalf("renewal after revocation: %s", out)
	}
	if log := ca.stderr.String(); !strings.Contains(log, `"event":"revoke","serial":"`+renewed.Serial+`"`) {
		t.Fatalf("the CA's log lacks the revocation of %s:\n%s", renewed.Serial, log)
	}
}
