package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/mcpexample"
)

// starterPolicy is the policy the example server ships with.
var starterPolicy = filepath.Join("..", "..", "scripts", "policies", "mcp-example.cedar")

// syncBuf is a goroutine-safe buffer for logs.
type syncBuf struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced at every write
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return s.b.Write(p)
}

// waitFor waits until the buffer holds sub: the server may log a refused
// handshake after the client has seen it fail.
func (s *syncBuf) waitFor(t testing.TB, sub string) {
	t.Helper()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if strings.Contains(s.b.String(), sub) {
			s.mu.Unlock()
			return
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("log lacks %q:\n%s", sub, s.String())
		}
	}
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pki is one real CA shared by the tests of this package.
type pki struct {
	ca          *catest.CA
	server      tls.Certificate
	reader      tls.Certificate // alice, role reader
	admin       tls.Certificate // bob, roles admin and reader
	guest       tls.Certificate // carol, no role
	clientTrust *identity.Verifier
}

// newPKI starts a CA for t and enrols a server and two clients.
func newPKI(t testing.TB) *pki {
	t.Helper()
	c := catest.Start(t, catest.Options{})
	p := &pki{ca: c}
	p.server = c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "files", DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	p.reader = c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "alice", Roles: []string{"reader"}, TTL: time.Hour})
	p.admin = c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "bob", Roles: []string{"admin", "reader"}, TTL: time.Hour})
	p.guest = c.Enroll(ca.TokenRequest{Kind: identity.KindClient, Name: "carol", TTL: time.Hour})
	b, err := trust.NewBundle([]*x509.Certificate{c.Root})
	if err != nil {
		t.Fatal(err)
	}
	p.clientTrust, err = identity.NewVerifier(trust.NewBundleStore(b), identity.WithTrustDomains("acme.test"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// env is a running example server protected by a Guard.
type env struct {
	*pki
	url        string
	clk        *clock.Fake
	authz      *policy.Live
	policyFile string
	crl        *trust.CRLFetcher
	audit      *syncBuf
	tlsLog     *syncBuf
	policyLog  *syncBuf // what the Live policy logs (reloads)
}

type envOptions struct {
	stateless bool
	noGuard   bool   // TLS but no adapter (benchmark baseline)
	toolArgs  bool   // pass tool arguments to the policy
	policy    string // policy text instead of the starter policy
	auditFile bool   // write the audit log to a file, as the example server does
	auditOpts []audit.Option
	auditLog  *audit.Log // instead of the in-memory or file log
	guardOpts []mcpauth.Option
}

// startServer serves the example server over mTLS on a loopback port.
func startServer(t testing.TB, p *pki, o envOptions) *env {
	t.Helper()
	e := &env{pki: p, audit: &syncBuf{}, tlsLog: &syncBuf{}, policyLog: &syncBuf{}}
	e.clk = clock.NewFake(time.Now())
	dir := t.TempDir()
	e.policyFile = filepath.Join(dir, "policy.cedar")
	src, err := os.ReadFile(starterPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if o.policy != "" {
		src = []byte(o.policy)
	}
	popts := []policy.Option{policy.WithClock(e.clk), policy.WithLogger(slog.New(slog.NewTextHandler(e.policyLog, nil)))}
	gopts := append([]mcpauth.Option{mcpauth.WithClock(e.clk), mcpauth.WithLogger(slogDiscard())}, o.guardOpts...)
	aopts := append([]audit.Option{}, o.auditOpts...)
	if o.toolArgs {
		popts = append(popts, policy.WithToolArguments())
		gopts = append(gopts, mcpauth.WithToolArguments())
		aopts = append(aopts, audit.WithArguments())
	}
	if err := os.WriteFile(e.policyFile, src, 0o600); err != nil {
		t.Fatal(err)
	}
	e.authz, err = policy.New([]string{e.policyFile}, popts...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := trust.NewBundle([]*x509.Certificate{p.ca.Root})
	if err != nil {
		t.Fatal(err)
	}
	bundle := trust.NewBundleStore(b)
	e.crl, err = trust.NewCRLFetcher(p.ca.URL+"/crl", trust.WithHTTPClient(trust.CAHTTPClient(bundle)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.crl.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(bundle, identity.WithTrustDomains("acme.test"), identity.WithCRL(e.crl), identity.WithClock(e.clk))
	if err != nil {
		t.Fatal(err)
	}
	srv := mcpexample.NewServer()
	var h http.Handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{Stateless: o.stateless})
	hs := &http.Server{
		TLSConfig: identity.ServerTLSConfig(identity.StaticCertificate{Cert: &p.server}, v),
		ErrorLog:  log.New(e.tlsLog, "", 0),
	}
	if !o.noGuard {
		al := audit.New(e.audit, aopts...)
		if o.auditFile {
			al, err = audit.Open(filepath.Join(dir, "audit.log"), aopts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = al.Close() })
		}
		if o.auditLog != nil {
			al = o.auditLog
		}
		g, err := mcpauth.New(v, e.authz, append(gopts, mcpauth.WithAuditLog(al))...)
		if err != nil {
			t.Fatal(err)
		}
		g.Install(srv)
		h = g.Handler(h)
		hs.ConnContext = g.ConnContext
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	hs.Handler = mux
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })
	e.url = "https://" + ln.Addr().String() + "/mcp"
	return e
}

// httpClient returns an HTTP client presenting cert over mTLS.
func (e *env) httpClient(cert tls.Certificate) *http.Client {
	c := cert
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   identity.ClientTLSConfig(identity.StaticCertificate{Cert: &c}, e.clientTrust, identity.WithServerName("127.0.0.1")),
		ForceAttemptHTTP2: true,
	}}
}

// connect opens an MCP session as cert. version "" is the SDK's newest
// (stateless, server/discover); "2025-11-25" makes a stateful session.
func (e *env) connect(t testing.TB, cert tls.Certificate, version string) (*mcp.ClientSession, *http.Client, error) {
	t.Helper()
	hc := e.httpClient(cert)
	cl := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := cl.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.url, HTTPClient: hc, DisableStandaloneSSE: true, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		return nil, hc, err
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs, hc, nil
}

func (e *env) mustConnect(t testing.TB, cert tls.Certificate, version string) (*mcp.ClientSession, *http.Client) {
	t.Helper()
	cs, hc, err := e.connect(t, cert, version)
	if err != nil {
		t.Fatalf("connect: %v\nserver TLS log: %s", err, e.tlsLog.String())
	}
	return cs, hc
}

func call(t testing.TB, cs *mcp.ClientSession, tool string, args map[string]any) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return "", err
	}
	var out []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			out = append(out, tc.Text)
		}
	}
	if res.IsError {
		return "", errors.New("tool error: " + strings.Join(out, " "))
	}
	return strings.Join(out, " "), nil
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
