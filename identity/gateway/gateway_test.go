package gateway_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/gateway"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/oauthtest"
	"github.com/mcpca/mcpca/internal/testca"
)

// The gateway's tests run an upstream MCP server that knows nothing of
// mcpca (the go-sdk's, over plain HTTP on loopback), the gateway in front
// of it over mTLS, and go-sdk clients with certificates of a test CA.

const testPolicy = `
@id("list") permit (principal, action in [Mcp::Action::"tools/list", Mcp::Action::"resources/list", Mcp::Action::"prompts/list", Mcp::Action::"resources/templates/list"], resource);
@id("readers") permit (principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource)
  when { ["search_docs", "ask", "slow", "add_tool", "who", "progress"].contains(resource.name) };
@id("readers-docs") permit (principal in Mcp::Role::"reader", action == Mcp::Action::"resources/read", resource is Mcp::Resource)
  when { resource.uri like "docs://*" };
@id("admins") permit (principal in Mcp::Role::"admin", action, resource);
`

// upstream is the MCP server behind the gateway: the example server's
// tools plus ask (elicits from the caller), slow (blocks until released
// or cancelled), add_tool (adds a tool: tools/list_changed) and who (the
// caller assertion the upstream received, checked).
type upstream struct {
	server   *mcp.Server
	url      string
	release  chan struct{}
	started  chan struct{}
	canceled chan struct{}

	mu      sync.Mutex
	headers []http.Header // of every request the upstream received
	bodies  [][]byte      // and their bodies
	verify  func(*http.Request) (*gateway.Caller, error)
}

// verifiedHeader carries to the upstream's tools what its HTTP handler
// made of the request's caller assertion (VerifyCaller reads the body,
// which a tool does not see).
const verifiedHeader = "X-Test-Verified-Caller"

func newUpstream(t *testing.T, stateless bool, store ...mcp.EventStore) *upstream {
	t.Helper()
	u := &upstream{server: mcpexample.NewServer(), release: make(chan struct{}), started: make(chan struct{}, 8), canceled: make(chan struct{}, 8)}
	obj := map[string]any{"type": "object"}
	u.server.AddTool(&mcp.Tool{Name: "ask", InputSchema: obj}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "your name?",
			RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}}})
		if err != nil {
			return nil, err
		}
		return textResult(fmt.Sprintf("%s: %v", res.Action, res.Content["name"])), nil
	})
	u.server.AddTool(&mcp.Tool{Name: "slow", InputSchema: obj}, func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		u.started <- struct{}{}
		select {
		case <-u.release:
			return textResult("released"), nil
		case <-ctx.Done():
			u.canceled <- struct{}{}
			return nil, ctx.Err()
		}
	})
	u.server.AddTool(&mcp.Tool{Name: "progress", InputSchema: obj}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		for i := range 3 {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i + 1), Total: 3}); err != nil {
				return nil, err
			}
		}
		return textResult("done"), nil
	})
	u.server.AddTool(&mcp.Tool{Name: "add_tool", InputSchema: obj}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		u.server.AddTool(&mcp.Tool{Name: "search_more", InputSchema: obj}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return textResult("more"), nil
		})
		return textResult("added"), nil
	})
	u.server.AddTool(&mcp.Tool{Name: "who", InputSchema: obj}, func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return textResult(req.Extra.Header.Get(verifiedHeader)), nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return u.server },
		&mcp.StreamableHTTPOptions{Stateless: stateless, Logger: slog.New(slog.DiscardHandler), EventStore: firstStore(store)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.bodies = append(u.bodies, body)
		verify := u.verify
		u.mu.Unlock()
		r.Header.Del(verifiedHeader)
		if verify != nil && r.Header.Get(gateway.CallerHeader) != "" {
			if c, err := verify(r); err != nil {
				r.Header.Set(verifiedHeader, "refused: "+err.Error())
			} else {
				r.Header.Set(verifiedHeader, c.ID+" "+strings.Join(c.Roles, ","))
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u.url = srv.URL + "/mcp"
	return u
}

// last returns the caller assertion and the body of the last request the
// upstream received.
func (u *upstream) last() (string, []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.headers[len(u.headers)-1].Get(gateway.CallerHeader), u.bodies[len(u.bodies)-1]
}

func firstStore(s []mcp.EventStore) mcp.EventStore {
	if len(s) == 0 {
		return nil
	}
	return s[0]
}

func textResult(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

// env is one gateway in front of one upstream.
type env struct {
	tca      *testca.CA
	up       *upstream
	gw       *gateway.Gateway
	url      string // the gateway's MCP URL
	crl      *trust.StaticCRL
	authz    *policy.Live
	policyF  string
	auditF   string
	gwCert   *testca.SVID
	verifier *identity.Verifier
}

type envOptions struct {
	policy    string // instead of testPolicy
	stateless bool
	resumable bool   // the upstream keeps its events (an EventStore)
	upstream  string // instead of the test's own
	gwOpts    []gateway.Option
	issuer    *oauthtest.Issuer // also accept this issuer's tokens
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{tca: testca.NewCA(t, "acme.test")}
	if o.resumable {
		e.up = newUpstream(t, o.stateless, mcp.NewMemoryEventStore(nil))
	} else {
		e.up = newUpstream(t, o.stateless)
	}
	b, err := trust.NewBundle([]*x509.Certificate{e.tca.Root()})
	if err != nil {
		t.Fatal(err)
	}
	bundle := trust.NewBundleStore(b)
	crl, err := trust.ParseCRL(e.tca.CreateCRL())
	if err != nil {
		t.Fatal(err)
	}
	e.crl = trust.NewStaticCRL(crl)
	e.verifier, err = identity.NewVerifier(bundle, identity.WithTrustDomains("acme.test"), identity.WithCRL(e.crl))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e.policyF = filepath.Join(dir, "policy.cedar")
	pol := testPolicy
	if o.policy != "" {
		pol = o.policy
	}
	if err := os.WriteFile(e.policyF, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	if e.authz, err = policy.New([]string{e.policyF}, policy.WithLogger(slog.New(slog.DiscardHandler))); err != nil {
		t.Fatal(err)
	}
	e.auditF = filepath.Join(dir, "audit.log")
	al, err := audit.Open(e.auditF)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = al.Close() })
	gopts := []mcpauth.Option{mcpauth.WithAuditLog(al), mcpauth.WithLogger(slog.New(slog.DiscardHandler))}
	var rs *oauth.Resource
	if o.issuer != nil {
		rs, err = oauth.New("", []oauth.Issuer{{URL: o.issuer.URL, TrustDomain: "acme.test"}}, oauth.WithHTTPClient(o.issuer.Client()),
			oauth.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		gopts = append(gopts, mcpauth.WithResourceServer(rs))
	}
	guard, err := mcpauth.New(e.verifier, e.authz, gopts...)
	if err != nil {
		t.Fatal(err)
	}
	e.gwCert = e.tca.CreateSVID("spiffe://acme.test/server/gateway", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	target := e.up.url
	if o.upstream != "" {
		target = o.upstream
	}
	opts := append([]gateway.Option{gateway.WithLogger(slog.New(slog.DiscardHandler)),
		gateway.WithCallerAssertion(identity.StaticCertificate{Cert: &e.gwCert.TLS})}, o.gwOpts...)
	e.gw, err = gateway.New(guard, target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.up.mu.Lock()
	e.up.verify = func(r *http.Request) (*gateway.Caller, error) {
		return gateway.VerifyCaller(r, e.verifier, gateway.WithGateways("spiffe://acme.test/server/gateway"), gateway.WithAudience(target))
	}
	e.up.mu.Unlock()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "https://" + ln.Addr().String() + "/mcp"
	mux := http.NewServeMux()
	mux.Handle("/mcp", e.gw)
	if rs != nil {
		if err := rs.SetResource(e.url); err != nil {
			t.Fatal(err)
		}
	}
	hs := &http.Server{Handler: mux, TLSConfig: guard.TLSConfig(identity.StaticCertificate{Cert: &e.gwCert.TLS}),
		ConnContext: guard.ConnContext, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })
	return e
}

// client returns an mTLS HTTP client of the identity of svid (nil: a TLS
// client without a certificate).
func (e *env) client(t *testing.T, svid *testca.SVID) *http.Client {
	t.Helper()
	var cert *tls.Certificate
	if svid != nil {
		cert = &svid.TLS
	}
	cfg := identity.ClientTLSConfig(identity.StaticCertificate{Cert: cert}, e.verifier, identity.WithServerName("127.0.0.1"))
	if svid == nil {
		cfg.GetClientCertificate = nil
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

func (e *env) connect(t *testing.T, svid *testca.SVID, opts *mcp.ClientOptions, standalone bool) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, opts).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: e.url, HTTPClient: e.client(t, svid), DisableStandaloneSSE: !standalone, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func callText(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) (string, error) {
	t.Helper()
	res, err := cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return "", err
	}
	var out []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			out = append(out, tc.Text)
		}
	}
	return strings.Join(out, " "), nil
}

func toolNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	return names
}

func wantRPCError(t *testing.T, err error, code int64, msg string) {
	t.Helper()
	var je *jsonrpc.Error
	if !errors.As(err, &je) || je.Code != code || !strings.Contains(je.Message, msg) {
		t.Fatalf("got %v, want JSON-RPC error %d %q", err, code, msg)
	}
}

// Through the gateway, each role sees and calls only what the policy lets
// it; a denial is the adapter's, audited, and the audit chain holds.
func TestGatewayEnforcesThePolicy(t *testing.T) {
	for _, stateless := range []bool{false, true} {
		t.Run(fmt.Sprintf("stateless=%v", stateless), func(t *testing.T) {
			e := newEnv(t, envOptions{stateless: stateless})
			reader := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
			admin := e.tca.CreateSVID("spiffe://acme.test/client/root", testca.WithRoles("admin"))
			rs := e.connect(t, reader, nil, false)
			as := e.connect(t, admin, nil, false)
			if got := strings.Join(toolNames(t, rs), ","); got != "add_tool,ask,progress,search_docs,slow,who" {
				t.Errorf("reader's tools: %s", got)
			}
			if got := len(toolNames(t, as)); got != 9 {
				t.Errorf("admin sees %d tools, want 9", got)
			}
			if got, err := callText(t, rs, mcpexample.ToolSearchDocs, map[string]any{"query": "roles"}); err != nil || !strings.Contains(got, "mention") {
				t.Errorf("reader's search_docs: %q %v", got, err)
			}
			_, err := callText(t, rs, mcpexample.ToolDeleteRecord, map[string]any{"id": "7"})
			wantRPCError(t, err, mcpauth.CodeDenied, mcpauth.DeniedMessage)
			if got, err := callText(t, as, mcpexample.ToolDeleteRecord, map[string]any{"id": "7"}); err != nil || got != "record 7 deleted" {
				t.Errorf("admin's delete_record: %q %v", got, err)
			}
			res, err := rs.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: mcpexample.ResourceHandbook})
			if err != nil || len(res.Contents) != 1 {
				t.Fatalf("reader's handbook: %v", err)
			}
			_, err = rs.ReadResource(ctxT(t), &mcp.ReadResourceParams{URI: mcpexample.ResourceSecrets})
			wantRPCError(t, err, mcpauth.CodeDenied, mcpauth.DeniedMessage)
			if got, err := callText(t, rs, "who", nil); err != nil || got != "spiffe://acme.test/client/alice reader" {
				t.Errorf("who (the caller assertion): %q %v", got, err)
			}
			f, err := os.Open(e.auditF)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			n, err := audit.Verify(f)
			if err != nil || n < 6 {
				t.Errorf("audit log: %d records, %v", n, err)
			}
		})
	}
}

func parseCRL(der []byte) (*trust.CRL, error) { return trust.ParseCRL(der) }
