package ca_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/internal/pemfile"
)

// A root rotation made at one replica reaches the other through the
// shared configuration: it trusts both roots (certs/root_ca.crt
// rewritten), and switches to the new intermediate on its own clock.
func TestRotationReachesReplicas(t *testing.T) {
	r := newReplicas(t)
	a, b, pw, clk := r.a, r.b, r.pw, r.clk
	sa, sb := r.open(a), r.open(b)
	if _, err := ca.RotateRoot(a, pw, ca.WithClock(clk), ca.WithSwitchAfter(time.Hour), ca.WithForce()); err != nil {
		t.Fatal(err)
	}
	if err := sa.Reload(); err != nil {
		t.Fatal(err)
	}
	issuer := func(s *ca.Server) string { return s.Authority().GetIntermediateCertificates()[0].Subject.CommonName }
	deadline := time.Now().Add(30 * time.Second)
	for len(sb.Authority().GetRootCertificates()) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("b never applied the root rotation")
		}
		clk.Advance(ca.DefaultConfigPoll)
		time.Sleep(10 * time.Millisecond) // let the poll run before the next tick
	}
	if got := issuer(sb); got != "Replicated Intermediate CA" {
		t.Fatalf("b issues with %q before the switch", got)
	}
	pem, err := os.ReadFile(filepath.Join(b, "certs", "root_ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if l, err := pemfile.ParseCertificates(pem, pemfile.RefuseOthers); err != nil || len(l) != 2 {
		t.Fatalf("b's certs/root_ca.crt: %d roots, %v", len(l), err)
	}
	clk.Advance(time.Hour)
	for issuer(sa) != "Replicated Intermediate CA G2" || issuer(sb) != "Replicated Intermediate CA G2" {
		if time.Now().After(deadline) {
			t.Fatalf("after the switch time a issues with %q, b with %q", issuer(sa), issuer(sb))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
