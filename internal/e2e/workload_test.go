package e2e_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
)

func workload(t *testing.T, c *catest.CA, opts ...agent.WorkloadOption) *agent.Workload {
	t.Helper()
	w, err := agent.NewWorkload(ctxT(t), c.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func rootFile(t *testing.T, c *catest.CA) string { return ca.Layout{Dir: c.Dir}.RootCert() }

func fingerprint(t *testing.T, c *catest.CA) string {
	sum := sha256.Sum256(c.Root.Raw)
	return hex.EncodeToString(sum[:])
}

// serve runs an HTTPS server with cfg on loopback and returns its address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.TLS.PeerCertificates[0].URIs[0].String())
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func get(t *testing.T, cfg *tls.Config, addr string) (string, error) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("https://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// One call gives a server and a client everything: the certificate (from a
// token, written to files, or from the files), the bundle, the CRL, and
// TLS configurations that check each other.
func TestWorkloadOneCall(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "files.crt"), filepath.Join(dir, "files.key")
	srvTok := c.Token(ca.TokenRequest{Kind: identity.KindServer, Name: "files", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, TTL: time.Hour})
	srv := workload(t, c, agent.WithRootFingerprint(fingerprint(t, c)), agent.WithToken(srvTok), agent.WithKeyPairFiles(certFile, keyFile))
	if got := srv.ID().String(); got != "spiffe://acme.test/server/files" {
		t.Fatalf("server ID %s", got)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	addr := serve(t, srv.ServerTLSConfig())
	// The bundle, in mcpca's form, is the CA's root.
	if b, err := srv.Bundle().Bundle(); err != nil || len(b.Roots()) != 1 || !b.Roots()[0].Equal(c.Root) {
		t.Fatalf("the workload's bundle: %v", err)
	}

	cli := workload(t, c, agent.WithRootFile(rootFile(t, c)), agent.WithToken(c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})))
	body, err := get(t, cli.ClientTLSConfig(identity.WithServerName("127.0.0.1")), addr)
	if err != nil || body != "hello spiffe://acme.test/client/reporter" {
		t.Fatalf("GET: %q %v", body, err)
	}

	// Restarted from its files, the spent token is not needed again.
	again := workload(t, c, agent.WithRootFile(rootFile(t, c)), agent.WithToken(srvTok), agent.WithKeyPairFiles(certFile, keyFile))
	if again.Source().Current().Leaf().SerialNumber.Cmp(srv.Source().Current().Leaf().SerialNumber) != 0 {
		t.Fatal("the restarted workload did not start from its files")
	}
}

// The CRL is loaded before NewWorkload returns: a client revoked before the
// server started is refused on its first connection.
func TestWorkloadChecksTheCRLFromTheStart(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	cli := workload(t, c, agent.WithRootFile(rootFile(t, c)), agent.WithToken(c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "intern", TTL: time.Hour})))
	serial := cli.Source().Current().Leaf().SerialNumber.String()
	tok, err := ca.MintRevokeToken(c.Dir, c.Password, "", serial)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Revoke(ctxT(t), serial, tok, "left"); err != nil {
		t.Fatal(err)
	}
	var refused error
	srv := workload(t, c, agent.WithRootFile(rootFile(t, c)),
		agent.WithToken(c.Token(ca.TokenRequest{Kind: identity.KindServer, Name: "files", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, TTL: time.Hour})))
	cfg := srv.ServerTLSConfig()
	verify := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		if err != nil {
			refused = err
		}
		return err
	}
	addr := serve(t, cfg)
	if _, err := get(t, cli.ClientTLSConfig(identity.WithServerName("127.0.0.1")), addr); err == nil {
		t.Fatal("a revoked client was served")
	}
	if identity.ReasonOf(refused) != identity.ReasonRevoked {
		t.Fatalf("the server refused the client with %v, want a revocation", refused)
	}
}

// go-spiffe's own tlsconfig takes a Workload as its SVID and bundle source.
func TestWorkloadWithGoSPIFFE(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	srv := workload(t, c, agent.WithRootFile(rootFile(t, c)), agent.WithToken(c.Token(ca.TokenRequest{Kind: identity.KindServer, Name: "files", TTL: time.Hour})))
	cli := workload(t, c, agent.WithRootFile(rootFile(t, c)), agent.WithToken(c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})))
	serverID := spiffeid.RequireFromString("spiffe://acme.test/server/files")
	addr := serve(t, tlsconfig.MTLSServerConfig(srv, srv, tlsconfig.AuthorizeMemberOf(spiffeid.RequireTrustDomainFromString("acme.test"))))
	body, err := get(t, tlsconfig.MTLSClientConfig(cli, cli, tlsconfig.AuthorizeID(serverID)), addr)
	if err != nil || body != "hello spiffe://acme.test/client/reporter" {
		t.Fatalf("GET with go-spiffe: %q %v", body, err)
	}
	// And go-spiffe refuses what it should: another expected ID.
	_, err = get(t, tlsconfig.MTLSClientConfig(cli, cli, tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://acme.test/server/payments"))), addr)
	if err == nil || !strings.Contains(err.Error(), `unexpected ID "spiffe://acme.test/server/files"`) {
		t.Fatalf("go-spiffe with another expected ID: %v", err)
	}
	if _, err := cli.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("other.test")); err == nil {
		t.Fatal("a bundle for another trust domain")
	}
}

// mcpca's verification added to go-spiffe's own server configuration:
// go-spiffe checks the SVID, mcpca adds what it does not (here, the CRL), so
// a revoked client that go-spiffe alone accepts is refused.
func TestHookIntoGoSPIFFEConfig(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	srv := workload(t, c, agent.WithRootFile(rootFile(t, c)), agent.WithToken(c.Token(ca.TokenRequest{Kind: identity.KindServer, Name: "files", TTL: time.Hour})))
	cli := workload(t, c, agent.WithRootFile(rootFile(t, c)), agent.WithToken(c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "intern", TTL: time.Hour})))
	serial := cli.Source().Current().Leaf().SerialNumber.String()
	tok, err := ca.MintRevokeToken(c.Dir, c.Password, "", serial)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Revoke(ctxT(t), serial, tok, "left"); err != nil {
		t.Fatal(err)
	}
	// A verifier that has seen the revocation (a fresh workload loads the
	// CRL before it returns).
	checker := workload(t, c, agent.WithRootFile(rootFile(t, c)), agent.WithToken(c.Token(ca.TokenRequest{Kind: identity.KindServer, Name: "checker", TTL: time.Hour})))
	serverID := tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://acme.test/server/files"))
	clientCfg := tlsconfig.MTLSClientConfig(cli, cli, serverID)

	plain := serve(t, tlsconfig.MTLSServerConfig(srv, srv, tlsconfig.AuthorizeAny()))
	if _, err := get(t, clientCfg, plain); err != nil {
		t.Fatalf("go-spiffe alone: %v (it does not check revocation, so it serves the revoked client)", err)
	}
	var refused error
	hooked := identity.HookServerConfig(tlsconfig.MTLSServerConfig(srv, srv, tlsconfig.AuthorizeAny()), checker.Verifier())
	verify := hooked.VerifyConnection
	hooked.VerifyConnection = func(cs tls.ConnectionState) error {
		err := verify(cs)
		if err != nil {
			refused = err
		}
		return err
	}
	addr := serve(t, hooked)
	if _, err := get(t, tlsconfig.MTLSClientConfig(cli, cli, serverID), addr); err == nil {
		t.Fatal("the hooked configuration served a revoked client")
	}
	if identity.ReasonOf(refused) != identity.ReasonRevoked {
		t.Fatalf("refused with %v, want a revocation", refused)
	}
	// The client side: go-spiffe's client configuration with mcpca's check
	// of the server's SPIFFE ID added.
	hc := identity.HookClientConfig(tlsconfig.MTLSClientConfig(srv, srv, tlsconfig.AuthorizeAny()), checker.Verifier(),
		identity.WithServerID(identity.ID{TrustDomain: "acme.test", Kind: identity.KindServer, Name: "payments"}))
	if _, err := get(t, hc, plain); identity.ReasonOf(err) != identity.ReasonNotAuthorized || !strings.Contains(err.Error(), "is not authorized for this connection (authorized: spiffe://acme.test/server/payments)") {
		t.Fatalf("hooked client to the wrong server: %v", err)
	}
}

func TestWorkloadRefusals(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	tok := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})
	workload(t, c, agent.WithRootFile(rootFile(t, c)), agent.WithToken(tok))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	unused := c.Token(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", TTL: time.Hour})
	for _, tc := range []struct {
		name string
		url  string
		opts []agent.WorkloadOption
		msg  string
	}{
		{"no root", c.URL, []agent.WorkloadOption{agent.WithToken(tok)}, "agent: no CA root to trust: give WithRootFile or WithRootFingerprint"},
		{"no certificate", c.URL, []agent.WorkloadOption{agent.WithRootFile(rootFile(t, c))}, "agent: no certificate to start from: give WithToken, WithKeyPairFiles, or both"},
		{"http", "http://127.0.0.1:1", []agent.WorkloadOption{agent.WithToken(tok)}, `agent: CA URL "http://127.0.0.1:1" must start with https://`},
		{"spent token", c.URL, []agent.WorkloadOption{agent.WithRootFile(rootFile(t, c)), agent.WithToken(tok)}, "token already used"},
		{"wrong fingerprint", c.URL, []agent.WorkloadOption{agent.WithRootFingerprint(strings.Repeat("ab", 32)), agent.WithToken(tok)}, "has no root with fingerprint " + strings.Repeat("ab", 32)},
		{"unwritable files", c.URL, []agent.WorkloadOption{agent.WithRootFile(rootFile(t, c)), agent.WithToken(unused), agent.WithKeyPairFiles(filepath.Join(dir, "file", "a.crt"), filepath.Join(dir, "a.key"))},
			"agent: cannot write " + filepath.Join(dir, "file", "a.crt") + ": not a directory (the token was not used)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agent.NewWorkload(ctxT(t), tc.url, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %q", err, tc.msg)
			}
		})
	}
	// The CA's refusal is a typed error.
	_, err := agent.NewWorkload(ctxT(t), c.URL, agent.WithRootFile(rootFile(t, c)), agent.WithToken(tok))
	var ae *agent.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || !strings.Contains(ae.Message, "token already used") {
		t.Fatalf("a spent token: %v (%#v)", err, ae)
	}
	// The unwritable destination was found before the token was spent.
	workload(t, c, agent.WithRootFile(rootFile(t, c)), agent.WithToken(unused))

	// A CA that does not answer: NewWorkload gives up when the context ends.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // accepts nothing: the TLS handshake never completes
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = agent.NewWorkload(ctx, "https://"+ln.Addr().String(), agent.WithRootFile(rootFile(t, c)), agent.WithToken(unused))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("against a silent CA: %v, want the context's deadline", err)
	}
}
