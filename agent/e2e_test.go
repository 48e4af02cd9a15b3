package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/clock"
)

// End to end against the real CA (embedded step-ca on loopback): first
// enrolment from a token file, a renewal over mTLS that keeps the roles,
// files on disk, hooks and health.
func TestEndToEndDaemonAgainstTheRealCA(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(root, pemCerts(c.Root), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := c.Token(ca.TokenRequest{Kind: identity.KindServer, Name: "web", Roles: []string{"reader"},
		Attributes: map[string]string{"team": "search"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, TTL: time.Hour})
	id := IdentityConfig{Name: "web", CAURL: c.URL, Root: root,
		Cert: filepath.Join(dir, "web", "cert.pem"), Key: filepath.Join(dir, "web", "key.pem"),
		Bundle: filepath.Join(dir, "web", "bundle.pem"), TokenFile: filepath.Join(dir, "web.token"), RenewAt: 0.5,
		Hooks: []HookConfig{{Exec: []string{"sh", "-c", "echo run >> " + filepath.Join(dir, "hook-runs")}}}}
	if err := os.WriteFile(id.TokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	// The daemon decides on a fake clock; the CA issues on the real one.
	fk := clock.NewFake(time.Now())
	armed := newArmed()
	obtained := make(chan error, 10)
	d := NewDaemon(WithDaemonClock(fk), WithDaemonLogger(quiet), WithSourceOptions(WithJitter(0), armed.option()),
		withObtained(func(_ string, err error) { obtained <- err }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- d.Run(ctx, func() (*Config, error) {
			cfg := &Config{Identities: []IdentityConfig{id}}
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
	enrolled, err := LoadKeyPair(id.Cert, id.Key)
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
	if roots, err := LoadCertificates(id.Bundle); err != nil || !roots[0].Equal(c.Root) {
		t.Fatalf("bundle: %v", err)
	}

	// Renewal point: renew over mTLS.
	fk.Set(enrolled.Leaf.NotBefore.Add(enrolled.Leaf.NotAfter.Sub(enrolled.Leaf.NotBefore) / 2))
	armed.next(t)
	st := d.Statuses()[0]
	if st.Renewals != 1 || st.LastError != nil {
		t.Fatalf("status after renewal: %+v", st)
	}
	renewed, err := LoadKeyPair(id.Cert, id.Key)
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
	roots, _ := LoadCertificates(id.Bundle)
	inter := x509.NewCertPool()
	for _, der := range renewed.Certificate[1:] {
		ic, _ := x509.ParseCertificate(der)
		inter.AddCert(ic)
	}
	if _, err := renewed.Leaf.Verify(x509.VerifyOptions{Roots: poolOf(roots), Intermediates: inter}); err != nil {
		t.Fatal(err)
	}
}

// In process, on the real clock: re-keying renewals through the real CA, the
// bundle fetched from it, and an mTLS handshake between two sources.
func TestEndToEndSourceRekeyAndHandshakeAgainstTheRealCA(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	server := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "api", DNSNames: []string{"localhost"}, TTL: time.Hour})
	client := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "alice", Roles: []string{"admin"}, TTL: time.Hour})
	newSource := func(cert tls.Certificate) (*Source, chan *Snapshot) {
		var s *Source
		cl := &CAClient{CAURL: c.URL, Rekey: true, TrustRoots: func() *x509.CertPool { return s.RootPool() }}
		s, err := NewSource(cert, cl, WithRoots([]*x509.Certificate{c.Root}), WithBundle(cl, 0), WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		updates := make(chan *Snapshot, 10)
		s.Subscribe(func(sn *Snapshot) { updates <- sn })
		runSource(t, s)
		return s, updates
	}
	srvSrc, srvUpdates := newSource(server)
	cliSrc, cliUpdates := newSource(client)
	for _, s := range []struct {
		src     *Source
		updates chan *Snapshot
		old     tls.Certificate
	}{{srvSrc, srvUpdates, server}, {cliSrc, cliUpdates, client}} {
		s.src.RenewNow()
		sn := <-s.updates
		if sn.Leaf().SerialNumber.Cmp(s.old.Leaf.SerialNumber) == 0 || sn.Key().Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(s.old.Leaf.PublicKey) {
			t.Fatal("not re-keyed")
		}
		if st := s.src.Status(); st.Renewals != 1 || st.LastError != nil {
			t.Fatalf("status %+v", st)
		}
		if id, err := sn.Identity(); err != nil || (id.ID.Name == "alice" && !id.HasRole("admin")) {
			t.Fatalf("identity after rekey: %+v %v", id, err)
		}
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: srvSrc.GetCertificate,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: srvSrc.RootPool(), MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- err.Error()
			return
		}
		id, err := identity.FromCertificate(tc.ConnectionState().PeerCertificates[0])
		if err != nil {
			peer <- err.Error()
			return
		}
		peer <- id.ID.String()
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{GetClientCertificate: cliSrc.GetClientCertificate,
		RootCAs: cliSrc.RootPool(), ServerName: "localhost", MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	conn.Handshake()
	defer conn.Close()
	if got := <-peer; got != "spiffe://acme.test/client/alice" {
		t.Fatalf("server saw %q", got)
	}
}
