package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/testca"
)

func mustID(s string) identity.ID {
	id, err := identity.ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// bankServer is a server identity of the CA whose certificate is for
// another host: login.bank.example and 10.0.0.1, not 127.0.0.1.
func bankServer(e *env, opts ...testca.SVIDOption) *testca.SVID {
	return e.ca.CreateSVID(server, append([]testca.SVIDOption{
		testca.WithDNSNames("login.bank.example"), testca.WithIPAddresses(net.IPv4(10, 0, 0, 1)),
	}, opts...)...)
}

// clientHandshake runs one handshake of a client configured with opts
// (and ServerName sni, when not empty) against a server presenting srv,
// and returns the client's error.
func clientHandshake(t *testing.T, e *env, srv *testca.SVID, sni string, opts ...identity.TLSOption) error {
	t.Helper()
	cli := e.ca.CreateSVID(alice)
	sc := identity.ServerTLSConfig(identity.StaticCertificate{Cert: &srv.TLS}, e.v)
	cc := identity.ClientTLSConfig(identity.StaticCertificate{Cert: &cli.TLS}, e.v, opts...)
	if sni != "" {
		cc.ServerName = sni
	}
	_, _, cerr := handshake(t, sc, cc)
	return cerr
}

func TestClientChecksServerHost(t *testing.T) {
	e := newEnv(t)
	srv := bankServer(e)
	for _, tc := range []struct {
		name string
		sni  string
		opts []identity.TLSOption
		want string // "" = accepted
	}{
		{name: "the DNS name, from ServerName", sni: "login.bank.example"},
		{name: "the DNS name, case and trailing dot", sni: "LOGIN.bank.example."},
		{name: "the DNS name, from WithServerName", opts: []identity.TLSOption{identity.WithServerName("login.bank.example")}},
		{name: "the IP address, from WithServerName", opts: []identity.TLSOption{identity.WithServerName("10.0.0.1")}},
		{
			name: "another IP address",
			opts: []identity.TLSOption{identity.WithServerName("127.0.0.1")},
			want: `identity: spiffe://example.org/server/files: certificate is not valid for host "127.0.0.1" (it names login.bank.example, 10.0.0.1)`,
		},
		{
			name: "another DNS name",
			sni:  "files.example.org",
			want: `identity: spiffe://example.org/server/files: certificate is not valid for host "files.example.org" (it names login.bank.example, 10.0.0.1)`,
		},
		{
			name: "a subdomain",
			opts: []identity.TLSOption{identity.WithServerName("evil.login.bank.example")},
			want: `identity: spiffe://example.org/server/files: certificate is not valid for host "evil.login.bank.example" (it names login.bank.example, 10.0.0.1)`,
		},
		{
			name: "no server name",
			want: "identity: spiffe://example.org/server/files: no server name to check the certificate against: give the host with WithServerName (crypto/tls does not report an IP address), or the expected server SPIFFE ID with WithServerID",
		},
		{
			// Another authorizer does not replace the host check.
			name: "an Authorizer is not a host check",
			opts: []identity.TLSOption{identity.WithServerName("127.0.0.1"), identity.WithAuthorizer(identity.AuthorizeAny())},
			want: `identity: spiffe://example.org/server/files: certificate is not valid for host "127.0.0.1" (it names login.bank.example, 10.0.0.1)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := clientHandshake(t, e, srv, tc.sni, tc.opts...)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			assertErr(t, err, tc.want, nil)
		})
	}
	// A certificate without DNS or IP SANs is valid for no host.
	assertErr(t, clientHandshake(t, e, e.ca.CreateSVID(server), "files.example.org"),
		`identity: spiffe://example.org/server/files: certificate is not valid for host "files.example.org" (it names no DNS name or IP address)`, nil)
}

func TestClientExpectsServerID(t *testing.T) {
	e := newEnv(t)
	srv := bankServer(e)
	// The expected ID replaces the host check: no name, or the wrong one.
	if err := clientHandshake(t, e, srv, "", identity.WithServerID(mustID(server))); err != nil {
		t.Fatalf("expected ID refused: %v", err)
	}
	if err := clientHandshake(t, e, srv, "files.example.org", identity.WithServerID(mustID("spiffe://example.org/server/other"), mustID(server))); err != nil {
		t.Fatalf("one of the expected IDs refused: %v", err)
	}
	err := clientHandshake(t, e, srv, "login.bank.example", identity.WithServerID(mustID("spiffe://example.org/server/payments")))
	assertErr(t, err, "identity: spiffe://example.org/server/files: identity is not authorized for this connection (authorized: spiffe://example.org/server/payments)", nil)
	// The chain is still checked first.
	err = clientHandshake(t, e, e.ca.CreateSVID("spiffe://example.org/client/mallory", testca.WithExtKeyUsage(x509.ExtKeyUsageServerAuth)), "", identity.WithServerID(mustID(server)))
	assertErr(t, err, "identity: spiffe://example.org/client/mallory: a client identity cannot act as a server", nil)
}

func TestClientRefusesRevokedServer(t *testing.T) {
	e := newEnv(t)
	srv := bankServer(e)
	if err := clientHandshake(t, e, srv, "login.bank.example"); err != nil {
		t.Fatalf("not yet revoked: %v", err)
	}
	e.crl.Set(mustCRL(t, e.ca.CreateCRL(testca.RevokedCerts(srv.Leaf))))
	want := fmt.Sprintf("identity: spiffe://example.org/server/files: certificate (serial %s) is revoked since 2030-06-01T11:59:00Z", srv.Leaf.SerialNumber.Text(16))
	assertErr(t, clientHandshake(t, e, srv, "login.bank.example"), want, nil)
	assertErr(t, clientHandshake(t, e, srv, "", identity.WithServerID(mustID(server))), want, nil)
}

// TestClientOverHTTP dials an IP address through net/http, which sets
// ServerName to the IP but crypto/tls does not report it: the client needs
// WithServerName (or WithServerID), and refuses without.
func TestClientOverHTTP(t *testing.T) {
	e := newEnv(t)
	good := e.ca.CreateSVID(server, testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	bank := bankServer(e)
	serve := func(srv *testca.SVID) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{
			Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
			TLSConfig: identity.ServerTLSConfig(identity.StaticCertificate{Cert: &srv.TLS}, e.v),
			ErrorLog:  log.New(io.Discard, "", 0),
		}
		go func() { _ = hs.ServeTLS(ln, "", "") }()
		t.Cleanup(func() { _ = hs.Close() })
		return "https://" + ln.Addr().String() + "/"
	}
	goodURL, bankURL := serve(good), serve(bank)
	cli := e.ca.CreateSVID(alice)
	get := func(url string, opts ...identity.TLSOption) error {
		tr := &http.Transport{TLSClientConfig: identity.ClientTLSConfig(identity.StaticCertificate{Cert: &cli.TLS}, e.v, opts...)}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get(goodURL, identity.WithServerName("127.0.0.1")); err != nil {
		t.Fatalf("right host refused: %v", err)
	}
	err := get(bankURL, identity.WithServerName("127.0.0.1"))
	want := `identity: spiffe://example.org/server/files: certificate is not valid for host "127.0.0.1" (it names login.bank.example, 10.0.0.1)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("wrong host: %v, want %s", err, want)
	}
	err = get(goodURL)
	if err == nil || !strings.Contains(err.Error(), "no server name to check the certificate against") {
		t.Fatalf("IP without WithServerName: %v", err)
	}
}

func TestVerifierRefusesWeakKeys(t *testing.T) {
	e := newEnv(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		svid *testca.SVID
		as   identity.Kind
		want string
	}{
		{"P-224 client", e.ca.CreateSVID(alice, testca.WithPublicKey(&p224.PublicKey)), identity.KindClient,
			"identity: spiffe://example.org/client/alice: certificate refused: ECDSA P-224 key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits"},
		{"RSA-1024 server", e.ca.CreateSVID(server, testca.WithPublicKey(&rsa1024.PublicKey)), identity.KindServer,
			"identity: spiffe://example.org/server/files: certificate refused: RSA-1024 key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.v.Verify(tc.svid.Chain, tc.as)
			assertErr(t, err, tc.want, identity.ErrWeakKey)
		})
	}
	// A P-256 leaf of the same CA passes.
	if _, err := e.v.Verify(e.ca.CreateSVID(alice).Chain, identity.KindClient); err != nil {
		t.Fatal(err)
	}
}
