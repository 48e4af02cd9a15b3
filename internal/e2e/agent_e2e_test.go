package e2e_test

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"github.com/mcpca/mcpca/agent"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/trust"
)

// In process, on the real clock: re-keying renewals through the real CA, the
// bundle fetched from it, and an mTLS handshake between two sources.
func TestEndToEndSourceRekeyAndHandshakeAgainstTheRealCA(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	server := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "api", DNSNames: []string{"localhost"}, TTL: time.Hour})
	client := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "alice", Roles: []string{"admin"}, TTL: time.Hour})
	newSource := func(cert tls.Certificate) (*agent.Source, chan *agent.Snapshot) {
		var s *agent.Source
		cl := &agent.CAClient{CAURL: c.URL, Rekey: true, TrustRoots: func() *x509.CertPool { return s.RootPool() }}
		s, err := agent.NewSource(cert, cl, agent.WithRoots([]*x509.Certificate{c.Root}), agent.WithBundle(cl, 0), agent.WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		updates := make(chan *agent.Snapshot, 10)
		s.Subscribe(func(sn *agent.Snapshot) { updates <- sn })
		runSource(t, s)
		return s, updates
	}
	srvSrc, srvUpdates := newSource(server)
	cliSrc, cliUpdates := newSource(client)
	for _, s := range []struct {
		src     *agent.Source
		updates chan *agent.Snapshot
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
	// The identity verifier trusts the sources' live bundles.
	verifier := func(src *agent.Source) *identity.Verifier {
		v, err := identity.NewVerifier(trust.RootsSource(src), identity.WithTrustDomains("acme.test"))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", identity.ServerTLSConfig(srvSrc, verifier(srvSrc)))
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
	ccfg := identity.ClientTLSConfig(cliSrc, verifier(cliSrc))
	ccfg.ServerName = "localhost"
	conn, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	conn.Handshake()
	defer conn.Close()
	if got := <-peer; got != "spiffe://acme.test/client/alice" {
		t.Fatalf("server saw %q", got)
	}
}
