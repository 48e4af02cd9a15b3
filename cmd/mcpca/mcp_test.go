package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/oauthtest"
	"github.com/mcpca/mcpca/internal/testca"
)

// writeMCPPair writes a certificate chain and its key as PEM files in dir.
func writeMCPPair(t *testing.T, dir, name string, cert tls.Certificate) (string, string) {
	t.Helper()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	c, k := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(c, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c, k
}

// startMCPServer serves the example MCP server behind mcpauth with the
// starter policy and returns its endpoint.
func startMCPServer(t *testing.T, c *catest.CA) string {
	t.Helper()
	server := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "files", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	return startMCPServerWith(t, c, server)
}

// startMCPServerWith is startMCPServer presenting the certificate server.
func startMCPServerWith(t *testing.T, c *catest.CA, server tls.Certificate) string {
	t.Helper()
	b, err := trust.NewBundle([]*x509.Certificate{c.Root})
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(trust.NewBundleStore(b), identity.WithTrustDomains("acme.test"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load([]string{"../../scripts/policies/mcp-example.cedar"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := mcpauth.New(v, set)
	if err != nil {
		t.Fatal(err)
	}
	srv := mcpexample.NewServer()
	g.Install(srv)
	hs := &http.Server{
		Handler:     g.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)),
		TLSConfig:   identity.ServerTLSConfig(identity.StaticCertificate{Cert: &server}, v),
		ConnContext: g.ConnContext,
		ErrorLog:    log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })
	return "https://" + ln.Addr().String() + "/mcp"
}

func TestMCPCommands(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	url := startMCPServer(t, c)
	dir := t.TempDir()
	root := filepath.Join(dir, "root_ca.crt")
	if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, rk := writeMCPPair(t, dir, "reader", c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", Roles: []string{"reader"}}))
	ac, ak := writeMCPPair(t, dir, "admin", c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "ops-admin", Roles: []string{"admin", "reader"}}))
	other := testca.NewCA(t, "acme.test")
	mc, mk := writeMCPPair(t, dir, "mallory", other.CreateSVID("spiffe://acme.test/client/mallory").TLS)
	otherRoot := filepath.Join(dir, "other_root.crt")
	if err := os.WriteFile(otherRoot, testca.CertsPEM(other.Root()), 0o644); err != nil {
		t.Fatal(err)
	}
	as := func(cert, key string, args ...string) []string {
		return append(args, "--url", url, "--cert", cert, "--key", key, "--root", root)
	}

	out := ok(t, dir, as(rc, rk, "mcp", "tools")...).stdout
	if !strings.Contains(out, "search_docs") || strings.Contains(out, "delete_record") {
		t.Errorf("reader's tools:\n%s", out)
	}
	out = ok(t, dir, as(ac, ak, "mcp", "tools")...).stdout
	if !strings.Contains(out, "delete_record") {
		t.Errorf("admin's tools:\n%s", out)
	}
	out = ok(t, dir, as(ac, ak, "mcp", "tools", "--json")...).stdout
	if !strings.Contains(out, `"inputSchema"`) {
		t.Errorf("tools --json:\n%s", out)
	}
	out = ok(t, dir, as(rc, rk, "mcp", "call", "search_docs", "--arg", "query=roles")...).stdout
	if !strings.Contains(out, `document(s) mention "roles"`) {
		t.Errorf("search_docs:\n%s", out)
	}
	out = ok(t, dir, as(rc, rk, "mcp", "call", "whoami")...).stdout
	if strings.TrimSpace(out) != "spiffe://acme.test/client/reporter roles=reader" {
		t.Errorf("whoami: %q", out)
	}
	out = ok(t, dir, as(ac, ak, "mcp", "call", "delete_record", "--arg", "id=42")...).stdout
	if strings.TrimSpace(out) != "record 42 deleted" {
		t.Errorf("delete_record as admin: %q", out)
	}
	fails(t, dir, "mcpca: calling delete_record: permission denied", as(rc, rk, "mcp", "call", "delete_record", "--arg", "id=42")...)
	out = ok(t, dir, as(rc, rk, "mcp", "read", "docs://handbook")...).stdout
	if !strings.Contains(out, "# Handbook") {
		t.Errorf("read handbook: %q", out)
	}
	fails(t, dir, "mcpca: reading file:///secrets/keys.txt: permission denied", as(ac, ak, "mcp", "read", "file:///secrets/keys.txt")...)
	fails(t, dir, "mcpca: calling no_such_tool: permission denied", as(rc, rk, "mcp", "call", "no_such_tool")...)
	fails(t, dir, `mcpca: --arg "query": want key=value`, as(rc, rk, "mcp", "call", "search_docs", "--arg", "query")...)
	fails(t, dir, "missing --url", "mcp", "tools", "--cert", rc, "--key", rk, "--root", root)
	fails(t, dir, "must be https://", "mcp", "tools", "--url", "http://127.0.0.1:1/mcp", "--cert", rc, "--key", rk, "--root", root)
	fails(t, dir, "hint: the server refused this client certificate", as(mc, mk, "mcp", "tools")...)
	fails(t, dir, "hint: the server's certificate does not chain to --root",
		"mcp", "tools", "--url", url, "--cert", rc, "--key", rk, "--root", otherRoot)
}

// TestMCPChecksServer: the client refuses a server certificate of the CA
// for another host, another SPIFFE ID than --server-id, a revoked one (with
// --crl), and one of another trust domain than --cert's.
func TestMCPChecksServer(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	bank := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "files", DNSNames: []string{"login.bank.example"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}})
	bankURL := startMCPServerWith(t, c, bank)
	good := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "files", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	goodURL := startMCPServerWith(t, c, good)
	// A server of another trust domain, under a root that --root also holds.
	other := testca.NewCA(t, "other.test")
	otherURL := startMCPServerWith(t, c, other.CreateSVID("spiffe://other.test/server/files", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1))).TLS)
	dir := t.TempDir()
	root := filepath.Join(dir, "root_ca.crt")
	if err := os.WriteFile(root, append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw}), testca.CertsPEM(other.Root())...), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, rk := writeMCPPair(t, dir, "reader", c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "reporter", Roles: []string{"reader"}}))
	tools := func(url string, args ...string) []string {
		return append([]string{"mcp", "tools", "--url", url, "--cert", rc, "--key", rk, "--root", root}, args...)
	}

	// The right host.
	if out := ok(t, dir, tools(goodURL)...).stdout; !strings.Contains(out, "search_docs") {
		t.Errorf("tools:\n%s", out)
	}
	// Another host: refused, naming the host and the certificate's names.
	r := fails(t, dir, `identity: spiffe://acme.test/server/files: certificate is not valid for host "127.0.0.1" (it names login.bank.example, 10.0.0.1)`, tools(bankURL)...)
	t.Logf("wrong host: %s", r.stderr)
	if !strings.Contains(r.stderr, "hint: the server's certificate is for another host: use a host it names in --url, or pass --server-id with the SPIFFE ID the server must have") {
		t.Errorf("no hint:\n%s", r.stderr)
	}
	// The expected SPIFFE ID replaces the host check.
	if out := ok(t, dir, tools(bankURL, "--server-id", "spiffe://acme.test/server/files")...).stdout; !strings.Contains(out, "search_docs") {
		t.Errorf("tools --server-id:\n%s", out)
	}
	fails(t, dir, "identity: spiffe://acme.test/server/files: identity is not authorized for this connection (authorized: spiffe://acme.test/server/payments)\nhint: the server is not the one --server-id names",
		tools(goodURL, "--server-id", "spiffe://acme.test/server/payments")...)
	fails(t, dir, "mcpca: --server-id spiffe://acme.test/client/files: a client identity, not a server one (spiffe://TRUST-DOMAIN/server/NAME)",
		tools(goodURL, "--server-id", "spiffe://acme.test/client/files")...)
	// The trust domain defaults to that of --cert, not any.
	fails(t, dir, `identity: spiffe://other.test/server/files: trust domain "other.test" is not trusted (trusted: acme.test)`, tools(otherURL)...)

	// Revoked: refused with --crl (not checked without).
	serial := good.Leaf.SerialNumber.String()
	tok, err := ca.MintRevokeToken(c.Dir, c.Password, "", serial)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.Revoke(context.Background(), serial, tok, "key compromise"); err != nil {
		t.Fatal(err)
	}
	ok(t, dir, tools(goodURL)...)
	r = fails(t, dir, "identity: spiffe://acme.test/server/files: certificate (serial "+good.Leaf.SerialNumber.Text(16)+") is revoked since ", tools(goodURL, "--crl", c.URL+"/crl")...)
	t.Logf("revoked: %s", r.stderr)
	if !strings.Contains(r.stderr, "hint: the server's certificate is revoked (--crl)") {
		t.Errorf("no hint:\n%s", r.stderr)
	}
	fails(t, dir, "identity: spiffe://acme.test/server/files: revocation status unknown: trust: no CRL loaded from "+c.URL+"/nope",
		tools(goodURL, "--crl", c.URL+"/nope")...)
	// The revoked certificate is refused whatever is expected of it.
	fails(t, dir, "is revoked since ", tools(goodURL, "--crl", c.URL+"/crl", "--server-id", "spiffe://acme.test/server/files")...)
	if out := ok(t, dir, tools(bankURL, "--crl", c.URL+"/crl", "--server-id", "spiffe://acme.test/server/files")...).stdout; !strings.Contains(out, "search_docs") {
		t.Errorf("unrevoked server with --crl:\n%s", out)
	}
}

// startTokenMCPServer serves the example MCP server behind a Guard that
// also takes the tokens of is, and returns its endpoint.
func startTokenMCPServer(t *testing.T, c *catest.CA, is *oauthtest.Issuer, more ...*oauthtest.Issuer) string {
	t.Helper()
	server := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "files", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	b, _ := trust.NewBundle([]*x509.Certificate{c.Root})
	v, err := identity.NewVerifier(trust.NewBundleStore(b), identity.WithTrustDomains("acme.test"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load([]string{"../../scripts/policies/auth-methods.cedar"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String() + "/mcp"
	issuers := []oauth.Issuer{{URL: is.URL, TrustDomain: "acme.test"}}
	for _, m := range more {
		issuers = append(issuers, oauth.Issuer{URL: m.URL, TrustDomain: "acme.test"})
	}
	rs, err := oauth.New(url, issuers, oauth.WithHTTPClient(is.Client()),
		oauth.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	g, err := mcpauth.New(v, set, mcpauth.WithResourceServer(rs))
	if err != nil {
		t.Fatal(err)
	}
	hs := g.Server("", "/mcp", mcpexample.NewServer(), identity.StaticCertificate{Cert: &server}, nil)
	hs.ErrorLog = log.New(io.Discard, "", 0)
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })
	return url
}

// TestMCPTokenFile: mcpca mcp presents a token with --token-file, alone
// or with the certificate it is bound to.
func TestMCPTokenFile(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	is := oauthtest.New(t)
	url := startTokenMCPServer(t, c, is)
	dir := t.TempDir()
	root := filepath.Join(dir, "root_ca.crt")
	if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	alice := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "alice", Roles: []string{"reader", "admin"}})
	ac, ak := writeMCPPair(t, dir, "alice", alice)
	leaf, _ := x509.ParseCertificate(alice.Certificate[0])
	write := func(name, tok string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	claims := is.Claims(url, "alice", time.Now())
	claims["roles"] = []string{"reader", "admin"}
	plain := write("plain.tok", is.Mint(t, claims))
	claims["cnf"] = map[string]any{"x5t#S256": oauth.Thumbprint(leaf.Raw)}
	bound := write("bound.tok", is.Mint(t, claims))

	out := ok(t, dir, "mcp", "call", "whoami", "--url", url, "--root", root, "--trust-domain", "acme.test", "--token-file", plain).stdout
	if strings.TrimSpace(out) != "spiffe://acme.test/client/alice roles=reader,admin" {
		t.Errorf("whoami with a token: %q", out)
	}
	// The policy asks for a key before delete_record: a bearer token is
	// not enough, the token bound to alice's certificate is.
	fails(t, dir, "mcpca: calling delete_record: permission denied", "mcp", "call", "delete_record", "--arg", "id=1",
		"--url", url, "--root", root, "--trust-domain", "acme.test", "--token-file", plain)
	out = ok(t, dir, "mcp", "call", "delete_record", "--arg", "id=1", "--url", url, "--root", root, "--cert", ac, "--key", ak, "--token-file", bound).stdout
	if strings.TrimSpace(out) != "record 1 deleted" {
		t.Errorf("delete_record with a bound token: %q", out)
	}
	fails(t, dir, "server answered 401 Unauthorized: invalid_token: the token is bound to a client certificate (cnf.x5t#S256): present that certificate",
		"mcp", "tools", "--url", url, "--root", root, "--trust-domain", "acme.test", "--token-file", bound)
	fails(t, dir, "server answered 401 Unauthorized: invalid_token: signature does not verify",
		"mcp", "tools", "--url", url, "--root", root, "--trust-domain", "acme.test", "--token-file",
		write("forged.tok", oauthtest.Sign(t, oauthtest.NewKey(t), "ES256", map[jose.HeaderKey]any{"kid": is.CurrentKID()}, claims)))
	fails(t, dir, "mcpca: missing --cert and --key (or --token-file): the server authenticates clients by certificate or token",
		"mcp", "tools", "--url", url, "--root", root)
	fails(t, dir, "mcpca: --token-file without --cert: pass --trust-domain (or --server-id)",
		"mcp", "tools", "--url", url, "--root", root, "--token-file", plain)
	fails(t, dir, "not one access token (one line of at most 16 KiB, no spaces)",
		"mcp", "tools", "--url", url, "--root", root, "--trust-domain", "acme.test", "--token-file", write("empty.tok", ""))
	fails(t, dir, "server answered 401 Unauthorized: invalid_token: not a JWT access token",
		"mcp", "tools", "--url", url, "--root", root, "--trust-domain", "acme.test", "--token-file", write("bad.tok", "not-a-jwt"))
}

// TestMCPOAuthSeveralIssuers: --oauth at a server that names two
// authorization servers asks which one (--ca-url).
func TestMCPOAuthSeveralIssuers(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	a, b := oauthtest.New(t), oauthtest.New(t)
	url := startTokenMCPServer(t, c, a, b)
	dir := t.TempDir()
	root := filepath.Join(dir, "root_ca.crt")
	if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	alice := c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "alice", Roles: []string{"reader"}})
	ac, ak := writeMCPPair(t, dir, "alice", alice)
	fails(t, dir, "mcpca: --oauth: the server names 2 authorization servers ("+a.URL+", "+b.URL+"): choose the CA with --ca-url",
		"mcp", "tools", "--oauth", "--url", url, "--root", root, "--cert", ac, "--key", ak)
	// With --ca-url, that one is asked: the CA here, whose token this
	// server (trusting a and b only) refuses.
	fails(t, dir, `server answered 401 Unauthorized: invalid_token: issuer "`+c.URL+`" is not trusted here`,
		"mcp", "call", "whoami", "--oauth", "--ca-url", c.URL, "--url", url, "--root", root, "--cert", ac, "--key", ak)
}
