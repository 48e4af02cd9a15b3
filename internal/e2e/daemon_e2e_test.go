package e2e_test

import (
	"context"
	"crypto/x509"
	"github.com/mcpca/mcpca/agent/daemon"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/agenttest"
)

// End to end against the real CA (embedded step-ca on loopback): first
// enrolment from a token file, a renewal over mTLS that keeps the roles,
// files on disk, hooks and health.
func TestEndToEndDaemonAgainstTheRealCA(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(root, agenttest.PEMCerts(c.Root), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := c.Token(ca.TokenRequest{Kind: identity.KindServer, Name: "web", Roles: []string{"reader"},
		Attributes: map[string]string{"team": "search"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, TTL: time.Hour})
	id := daemon.IdentityConfig{Name: "web", CAURL: c.URL, Root: root,
		Cert: filepath.Join(dir, "web", "cert.pem"), Key: filepath.Join(dir, "web", "key.pem"),
		Bundle: filepath.Join(dir, "web", "bundle.pem"), TokenFile: filepath.Join(dir, "web.token"), RenewAt: 0.5,
		Hooks: []daemon.HookConfig{{Exec: []string{"sh", "-c", "echo run >> " + filepath.Join(dir, "hook-runs")}}}}
	if err := os.WriteFile(id.TokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	// The daemon decides on a fake clock; the CA issues on the real one.
	fk := clock.NewFake(time.Now())
	armed := newArmed()
	obtained := make(chan error, 10)
	d := daemon.New(daemon.WithClock(fk), daemon.WithLogger(quiet), daemon.WithSourceOptions(agent.WithJitter(0), armed.option()),
		daemon.WithOnObtain(func(_ string, err error) { obtained <- err }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- d.Run(ctx, func() (*daemon.Config, error) {
			cfg := &daemon.Config{Identities: []daemon.IdentityConfig{id}}
			return cfg, cfg.Validate()
		}, nil)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if err := <-obtained; err != nil {
		t.Fatal(err)
	}
	armed.next(t)
	enrolled, err := agent.LoadKeyPair(id.Cert, id.Key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := identity.FromCertificate(enrolled.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID.String() != "spiffe://acme.test/server/web" || !got.HasRole("reader") || got.Attributes["team"] != "search" {
		t.Fatalf("enrolled identity %+v", got)
	}
	if roots, err := agent.LoadCertificates(id.Bundle); err != nil || !roots[0].Equal(c.Root) {
		t.Fatalf("bundle: %v", err)
	}

	// Renewal point: renew over mTLS.
	fk.Set(enrolled.Leaf.NotBefore.Add(enrolled.Leaf.NotAfter.Sub(enrolled.Leaf.NotBefore) / 2))
	armed.next(t)
	st := d.Statuses()[0]
	if st.Renewals != 1 || st.LastError != nil {
		t.Fatalf("status after renewal: %+v", st)
	}
	renewed, err := agent.LoadKeyPair(id.Cert, id.Key)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Leaf.SerialNumber.Cmp(enrolled.Leaf.SerialNumber) == 0 {
		t.Fatal("the certificate on disk was not renewed")
	}
	after, err := identity.FromCertificate(renewed.Leaf)
	if err != nil || after.ID != got.ID || !after.HasRole("reader") || after.Attributes["team"] != "search" {
		t.Fatalf("renewal lost the identity: %+v %v", after, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "hook-runs")); string(b) != "run\nrun\n" {
		t.Fatalf("hook runs %q", b)
	}
	// The renewed certificate verifies against the bundle, as a peer would.
	roots, _ := agent.LoadCertificates(id.Bundle)
	inter := x509.NewCertPool()
	for _, der := range renewed.Certificate[1:] {
		ic, _ := x509.ParseCertificate(der)
		inter.AddCert(ic)
	}
	if _, err := renewed.Leaf.Verify(x509.VerifyOptions{Roots: poolOf(roots...), Intermediates: inter}); err != nil {
		t.Fatal(err)
	}
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
