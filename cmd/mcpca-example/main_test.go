package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	flag "github.com/spf13/pflag"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/trust"
)

// logLines collects the server's log and lets a test wait for a line.
type logLines struct {
	mu    sync.Mutex
	all   bytes.Buffer
	lines chan string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	for _, s := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		select {
		case l.lines <- s:
		default:
		}
	}
	return len(p), nil
}

// waitFor returns the first line from now on that contains every one of subs.
func (l *logLines) waitFor(t *testing.T, subs ...string) string {
	t.Helper()
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	for {
		select {
		case s := <-l.lines:
			ok := true
			for _, sub := range subs {
				ok = ok && strings.Contains(s, sub)
			}
			if ok {
				return s
			}
		case <-deadline.C:
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("no log line with %q; log:\n%s", subs, l.all.String())
		}
	}
}

func writePair(t *testing.T, cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then the certificate, as mcpca agent does.
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, chain, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--cert is required (see --help)"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r"}, "--policy is required (see --help)"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "extra"}, `unexpected argument "extra"`},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--poll", "0s"}, "--poll must be positive, got 0s"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--audit-flush", "-1s"}, "--audit-flush must not be negative, got -1s"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--apikey-refresh", "0s"}, "--apikey-refresh must be positive, got 0s"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--token-introspection", "https://as.test"}, "--token-introspection https://as.test needs --token-issuer https://as.test"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--token-issuer", "https://as.test", "--token-introspection", "https://as.test"},
			"--token-introspection needs --introspection-client-id and --introspection-secret-file (RFC 7662: the resource server authenticates to the introspection endpoint)"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--token-issuer", "https://as.test", "--introspection-client-id", "rs"},
			"--introspection-client-id and --introspection-secret-file need --token-introspection"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--token-issuer", "https://as.test", "--token-introspection", "https://as.test",
			"--introspection-client-id", "rs", "--introspection-secret-file", "/nonexistent/secret"}, "--introspection-secret-file: open /nonexistent/secret: no such file or directory"},
		{[]string{"--cert", "/nonexistent/c", "--key", "k", "--root", "r", "--policy", "p"}, "trust: reading the certificate: open /nonexistent/c: no such file or directory"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--resource", "https://x/mcp"}, "--resource, --token-scope and --require-bound-tokens need --token-issuer"},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--token-issuer", "https://as.test", "--token-scope", "a b"}, `--token-scope "a b": a scope is one word`},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--token-issuer", "http://as.test"}, `--token-issuer: oauth: issuer "http://as.test": an issuer is an https:// URL (RFC 8414)`},
		{[]string{"--cert", "c", "--key", "k", "--root", "r", "--policy", "p", "--token-issuer", "https://as.test=Bad_TD"}, `--token-issuer: oauth: issuer "https://as.test": trust domain "Bad_TD" is not valid: use 1-255 characters of [a-z0-9._-]`},
	} {
		err := run(context.Background(), tc.args, io.Discard, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

// example is a running mcpca-example (run in-process) with its files.
type example struct {
	ca                                      *catest.CA
	dir, certFile, keyFile, rootFile, audit string
	addr                                    string
	logs                                    *logLines
	reload                                  chan struct{}
	reader                                  tls.Certificate
	stop                                    func() error // stops the server and returns what run returned
}

func startExample(t *testing.T, extra ...string) *example {
	t.Helper()
	return startExampleWith(t, catest.Start(t, catest.Options{}), extra...)
}

func startExampleWith(t *testing.T, c *catest.CA, extra ...string) *example {
	t.Helper()
	dir := t.TempDir()
	e := &example{ca: c, dir: dir, certFile: filepath.Join(dir, "server.crt"), keyFile: filepath.Join(dir, "server.key"),
		rootFile: filepath.Join(dir, "root_ca.crt"), audit: filepath.Join(dir, "audit.log"),
		logs: &logLines{lines: make(chan string, 1000)}, reload: make(chan struct{}, 1)}
	server := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "files", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	writePair(t, server, e.certFile, e.keyFile)
	if err := os.WriteFile(e.rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	e.reader = c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "alice", Roles: []string{"reader"}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	args := append([]string{"--listen", "127.0.0.1:0", "--cert", e.certFile, "--key", e.keyFile, "--root", e.rootFile,
		"--policy", "../../scripts/policies/mcp-example.cedar", "--audit", e.audit, "--crl", c.URL + "/crl"}, extra...)
	go func() { done <- run(ctx, args, e.logs, e.reload) }()
	e.stop = sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	line := e.logs.waitFor(t, `"msg":"serving"`)
	e.addr = regexp.MustCompile(`"addr":"([^"]+)"`).FindStringSubmatch(line)[1]
	return e
}

func TestServe(t *testing.T) {
	e := startExample(t)
	c, addr, logs, reload, reader := e.ca, e.addr, e.logs, e.reload, e.reader
	certFile, keyFile, auditFile := e.certFile, e.keyFile, e.audit
	ctx := context.Background()

	b, _ := trust.NewBundle([]*x509.Certificate{c.Root})
	sv, err := identity.NewVerifier(trust.NewBundleStore(b), identity.WithTrustDomains("acme.test"))
	if err != nil {
		t.Fatal(err)
	}
	var serverSerial string
	client := func(cert tls.Certificate) *http.Client {
		cfg := identity.ClientTLSConfig(identity.StaticCertificate{Cert: &cert}, sv, identity.WithServerName("127.0.0.1"))
		verify := cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			serverSerial = cs.PeerCertificates[0].SerialNumber.String()
			return verify(cs)
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}

	// Readiness.
	resp, err := client(reader).Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	var health map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if health["status"] != "ok" || health["server"] != "spiffe://acme.test/server/files" {
		t.Fatalf("healthz: %v", health)
	}

	connect := func(cert tls.Certificate) (*mcp.ClientSession, error) {
		return mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx,
			&mcp.StreamableClientTransport{Endpoint: "https://" + addr + "/mcp", HTTPClient: client(cert), MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	}
	cs, err := connect(reader)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "search_docs", Arguments: map[string]any{"query": "roles"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "delete_record", Arguments: map[string]any{"id": "1"}}); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("delete_record as reader: %v", err)
	}
	data, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := audit.Verify(bytes.NewReader(data)); err != nil || n != 2 {
		t.Fatalf("audit log: %d records, %v\n%s", n, err, data)
	}

	// The server's certificate is renewed on disk and reloaded, no restart.
	first := serverSerial
	renewed := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "files", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	writePair(t, renewed, certFile, keyFile)
	reload <- struct{}{}
	logs.waitFor(t, `"msg":"reloaded"`)
	cs2, err := connect(reader)
	if err != nil {
		t.Fatal(err)
	}
	cs2.Close()
	if serverSerial != renewed.Leaf.SerialNumber.String() || serverSerial == first {
		t.Fatalf("server still presents serial %s after the reload (first %s, renewed %s)", serverSerial, first, renewed.Leaf.SerialNumber)
	}

	// A broken certificate file is refused; the server keeps serving the
	// last good one.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	logs.waitFor(t, `"msg":"reloaded with errors (the previous state stays where a reload failed)"`, "failed to find any PEM data in certificate input")
	cs3, err := connect(reader)
	if err != nil {
		t.Fatal(err)
	}
	cs3.Close()
	if serverSerial != renewed.Leaf.SerialNumber.String() {
		t.Fatalf("server presents serial %s after a broken reload, want %s", serverSerial, renewed.Leaf.SerialNumber)
	}
	writePair(t, renewed, certFile, keyFile)

	// Revoke the reader; after the reload (CRL refresh) it is refused.
	if err := c.Client.RevokeSelf(ctx, reader, "test"); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	logs.waitFor(t, `"msg":"reloaded"`, `"crl_revoked":1`)
	if _, err := connect(reader); err == nil {
		t.Fatal("a revoked certificate connected")
	}
	logs.waitFor(t, "TLS handshake error", "spiffe://acme.test/client/alice", "revoked")
}

// With --audit-flush the decisions reach the audit log in batches, and the
// last batch is written when the server stops.
func TestServeAuditFlushWritesOnShutdown(t *testing.T) {
	e := startExample(t, "--audit-flush", "1h")
	b, _ := trust.NewBundle([]*x509.Certificate{e.ca.Root})
	sv, err := identity.NewVerifier(trust.NewBundleStore(b), identity.WithTrustDomains("acme.test"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: identity.ClientTLSConfig(identity.StaticCertificate{Cert: &e.reader}, sv, identity.WithServerName("127.0.0.1"))}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: "https://" + e.addr + "/mcp", HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "search_docs", Arguments: map[string]any{"query": "roles"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "delete_record", Arguments: map[string]any{"id": "1"}}); err == nil {
		t.Fatal("delete_record allowed to the reader")
	}
	cs.Close()
	if data, err := os.ReadFile(e.audit); err != nil || len(data) != 0 {
		t.Fatalf("audit log before the interval: %q, %v (want empty: the batch is not due)", data, err)
	}
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := audit.Verify(bytes.NewReader(data)); err != nil || n != 2 {
		t.Fatalf("audit log after shutdown: %d records, %v\n%s", n, err, data)
	}
}

// With --ca-url the server renews its own certificate in-process (an agent
// Source) over mTLS to the CA, serves the renewed one at once and writes it
// back to its files.
func TestServeRenewsInProcess(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	e := startExampleWith(t, c, "--ca-url", c.URL)
	sv := serverVerifier(t, c)
	first := serverSerial(t, e, sv)
	e.reload <- struct{}{} // SIGHUP: renew now
	// The CA renews with the same lifetime and one-second resolution, so a
	// renewal within the second of issuance does not end later: the agent
	// serves it but warns and backs off rather than renewing in a loop.
	var line string
	for !strings.Contains(line, "agent: certificate renewed") && !strings.Contains(line, "agent: the renewed certificate") {
		line = e.logs.waitFor(t, `"identity":"mcpca-example"`)
	}
	second := serverSerial(t, e, sv)
	if second == first {
		t.Fatalf("server still presents serial %s after the renewal: %s", first, line)
	}
	pair, err := tls.LoadX509KeyPair(e.certFile, e.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if leaf.SerialNumber.String() != second {
		t.Fatalf("%s holds serial %s, the server presents %s", e.certFile, leaf.SerialNumber, second)
	}
}

func serverVerifier(t *testing.T, c *catest.CA) *identity.Verifier {
	t.Helper()
	b, _ := trust.NewBundle([]*x509.Certificate{c.Root})
	v, err := identity.NewVerifier(trust.NewBundleStore(b), identity.WithTrustDomains("acme.test"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// serverSerial connects as the reader and returns the serial of the
// certificate the server presented.
func serverSerial(t *testing.T, e *example, v *identity.Verifier) string {
	t.Helper()
	cfg := identity.ClientTLSConfig(identity.StaticCertificate{Cert: &e.reader}, v, identity.WithServerName("127.0.0.1"))
	conn, err := tls.Dial("tcp", e.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// --help is not an error: main exits 0 on flag.ErrHelp.
func TestHelpIsNotAnError(t *testing.T) {
	var out strings.Builder
	err := run(context.Background(), []string{"--help"}, &out, nil)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "--idle-timeout duration") {
		t.Fatalf("--help: %v\n%s", err, out.String())
	}
}

// An idle keep-alive connection is closed after --idle-timeout, and a
// client that completes TLS but sends no request after
// --read-header-timeout: neither holds a connection open for free.
func TestServerClosesIdleAndSilentConnections(t *testing.T) {
	e := startExample(t, "--idle-timeout", "300ms", "--read-header-timeout", "300ms")
	dial := func() *tls.Conn {
		cert := e.reader
		conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.ca.Roots, Certificates: []tls.Certificate{cert}, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	closedByServer := func(conn *tls.Conn, what string) {
		t.Helper()
		// A generous bound: the server closes it long before, and a server
		// that never does fails the test here instead of hanging it.
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 4096)
		for {
			_, err := conn.Read(buf)
			if err == nil {
				continue // the rest of a response
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("%s: the server kept the connection open", what)
			}
			return // EOF or reset: closed by the server
		}
	}
	idle := dial()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	closedByServer(idle, "idle keep-alive connection")
	closedByServer(dial(), "connection without a request")
}
