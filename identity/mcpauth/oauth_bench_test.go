package mcpauth_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/oauthtest"
	"github.com/mcpca/mcpca/internal/testca"
)

// BenchmarkAuthMethods measures what authenticating one request costs a
// Guard (Guard.Authenticate: the certificate re-verified from the
// verifier's cache, the token looked up or verified, the binding checked,
// the principal found), for each way a client authenticates, in rotation
// in one run so that they share the machine's state:
//
//   - mtls: a client certificate on a warm connection;
//   - jwt: a JWT access token seen before (cached);
//   - jwt-first: a JWT never seen (signature check, claims, principal);
//   - bound: a token bound to the certificate presented with it.
//
// It reports each one's p50 (ns) and the differences the goals are stated
// in: jwt-mtls, bound-jwt.
func BenchmarkAuthMethods(b *testing.B) {
	tca := testca.NewCA(b, "acme.test")
	is := oauthtest.New(b)
	const resource = "https://mcp.acme.test/mcp"
	rs, err := oauth.New(resource, []oauth.Issuer{{URL: is.URL, TrustDomain: "acme.test"}},
		oauth.WithHTTPClient(is.Client()), oauth.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	_, authz, _ := benchDeps(b)
	g, err := mcpauth.New(verifierOf(b, tca), authz, mcpauth.WithResourceServer(rs), mcpauth.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	alice := tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	state := &tls.ConnectionState{PeerCertificates: alice.Chain}
	claims := func(i int) map[string]any {
		c := is.Claims(resource, "spiffe://acme.test/client/alice", time.Now())
		c["roles"] = []string{"reader"}
		c["jti"] = strconv.Itoa(i)
		return c
	}
	plain := is.Mint(b, claims(-1))
	bc := claims(-2)
	bc["cnf"] = map[string]any{"x5t#S256": oauth.Thumbprint(alice.Leaf.Raw)}
	bound := is.Mint(b, bc)

	req := func(ctx context.Context, st *tls.ConnectionState, tok string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "https://localhost/mcp", nil).WithContext(ctx)
		r.TLS, r.RemoteAddr = st, "127.0.0.1:5555"
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		return r
	}
	// One connection per method, each with its connection cache.
	mtlsReq := req(g.ConnContext(context.Background(), nil), state, "")
	jwtReq := req(g.ConnContext(context.Background(), nil), nil, plain)
	boundReq := req(g.ConnContext(context.Background(), nil), state, bound)
	for _, r := range []*http.Request{mtlsReq, jwtReq, boundReq} { // warm: keys fetched, caches filled
		if _, err := g.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
	// Fresh tokens for jwt-first, minted before the clock runs.
	const batch = 512
	fresh := make([]*http.Request, 0, batch)
	next := 0
	refill := func() {
		fresh = fresh[:0]
		for i := range batch {
			fresh = append(fresh, req(context.Background(), nil, is.Mint(b, claims(next+i))))
		}
		next += batch
	}
	refill()

	names := []string{"mtls", "jwt", "jwt-first", "bound"}
	times := make([][]time.Duration, len(names))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%batch == 0 && i > 0 {
			b.StopTimer()
			refill()
			b.StartTimer()
		}
		for m, r := range []*http.Request{mtlsReq, jwtReq, fresh[i%batch], boundReq} {
			start := time.Now()
			c, err := g.Authenticate(r)
			d := time.Since(start)
			if err != nil || c == nil {
				b.Fatalf("%s: %v", names[m], err)
			}
			times[m] = append(times[m], d)
		}
	}
	b.StopTimer()
	p50 := make([]float64, len(names))
	for m := range names {
		slices.Sort(times[m])
		p50[m] = float64(times[m][len(times[m])/2].Nanoseconds())
		b.ReportMetric(p50[m], names[m]+"-p50-ns")
	}
	b.ReportMetric(p50[1]-p50[0], "jwt-minus-mtls-ns")
	b.ReportMetric(p50[3]-p50[1], "bound-minus-jwt-ns")
}

// BenchmarkAuthRequests is BenchmarkAuthMethods end to end: a tools/call
// round trip to the example server (stateless) over TLS on a warm
// loopback connection per method, in rotation, with the p50 of each.
func BenchmarkAuthRequests(b *testing.B) {
	tca := testca.NewCA(b, "acme.test")
	is := oauthtest.New(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	url := "https://" + ln.Addr().String() + "/mcp"
	rs, err := oauth.New(url, []oauth.Issuer{{URL: is.URL, TrustDomain: "acme.test"}},
		oauth.WithHTTPClient(is.Client()), oauth.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	_, authz, _ := benchDeps(b)
	v := verifierOf(b, tca)
	g, err := mcpauth.New(v, authz, mcpauth.WithResourceServer(rs), mcpauth.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	server := tca.CreateSVID("spiffe://acme.test/server/files", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	hs := g.Server("", "/mcp", mcpexample.NewServer(), identity.StaticCertificate{Cert: &server.TLS}, &mcp.StreamableHTTPOptions{Stateless: true})
	hs.ErrorLog = log.New(io.Discard, "", 0)
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	b.Cleanup(func() { _ = hs.Close() })

	alice := tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	c := is.Claims(url, "spiffe://acme.test/client/alice", time.Now())
	c["roles"] = []string{"reader"}
	plain := is.Mint(b, c)
	c["cnf"] = map[string]any{"x5t#S256": oauth.Thumbprint(alice.Leaf.Raw)}
	bound := is.Mint(b, c)
	client := func(cert *tls.Certificate, tok string) *http.Client {
		cfg := identity.ClientTLSConfig(identity.StaticCertificate{Cert: cert}, v, identity.WithServerName("127.0.0.1"))
		if cert == nil {
			cfg.GetClientCertificate = nil
		}
		var rt http.RoundTripper = &http.Transport{TLSClientConfig: cfg}
		if tok != "" {
			rt = withToken{tok, rt}
		}
		return &http.Client{Transport: rt}
	}
	names := []string{"mtls", "jwt", "bound"}
	clients := []*http.Client{client(&alice.TLS, ""), client(nil, plain), client(&alice.TLS, bound)}
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}`
	do := func(hc *http.Client) {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(out), "spiffe://acme.test/client/alice") {
			b.Fatalf("%d %s", resp.StatusCode, out)
		}
	}
	for _, hc := range clients { // warm connections and caches
		do(hc)
	}
	times := make([][]time.Duration, len(names))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for m, hc := range clients {
			start := time.Now()
			do(hc)
			times[m] = append(times[m], time.Since(start))
		}
	}
	b.StopTimer()
	for m := range names {
		slices.Sort(times[m])
		b.ReportMetric(float64(times[m][len(times[m])/2].Nanoseconds())/1e3, names[m]+"-p50-us")
	}
}
