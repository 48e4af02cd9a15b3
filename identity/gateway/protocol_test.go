package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/gateway"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/oauthtest"
	"github.com/mcpca/mcpca/internal/testca"
)

// post sends one raw message to the gateway as svid and returns the status
// and body.
func (e *env) post(t *testing.T, svid *testca.SVID, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, e.url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.client(t, svid).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A server-to-client request (elicitation) made during a call reaches the
// client that made the call, and its answer reaches the upstream.
func TestGatewayRoutesServerRequests(t *testing.T) {
	e := newEnv(t, envOptions{})
	reader := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	asked := 0
	cs := e.connect(t, reader, &mcp.ClientOptions{ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		asked++
		return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Alice"}}, nil
	}}, false)
	got, err := callText(t, cs, "ask", nil)
	if err != nil || got != "accept: Alice" || asked != 1 {
		t.Fatalf("elicitation round trip: %q %v (asked %d times)", got, err, asked)
	}
}

// tools/list_changed reaches the client on its standalone stream, and the
// list it then asks for is filtered again.
func TestGatewayPassesListChanged(t *testing.T) {
	e := newEnv(t, envOptions{})
	reader := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	admin := e.tca.CreateSVID("spiffe://acme.test/client/root", testca.WithRoles("admin"))
	changed := make(chan struct{}, 4)
	cs := e.connect(t, reader, &mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
		changed <- struct{}{}
	}}, true)
	as := e.connect(t, admin, nil, false)
	before := strings.Join(toolNames(t, cs), ",")
	if _, err := callText(t, cs, "add_tool", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(30 * time.Second):
		t.Fatal("no tools/list_changed reached the client")
	}
	if after := strings.Join(toolNames(t, cs), ","); after != before {
		t.Errorf("the reader's list changed from %s to %s: the new tool is not the reader's", before, after)
	}
	if !strings.Contains(strings.Join(toolNames(t, as), ","), "search_more") {
		t.Error("the admin's list lacks the new tool")
	}
}

// A session is its creator's: another identity naming it is refused, and
// the creator keeps using it.
func TestGatewayBindsSessions(t *testing.T) {
	e := newEnv(t, envOptions{})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	bob := e.tca.CreateSVID("spiffe://acme.test/client/bob", testca.WithRoles("reader"))
	cs := e.connect(t, alice, nil, false)
	sid := cs.ID()
	if sid == "" {
		t.Fatal("no session")
	}
	status, body := e.post(t, bob, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"})
	if status != http.StatusForbidden || !strings.Contains(body, `"error":"session belongs to another identity"`) {
		t.Fatalf("bob with alice's session: %d %s", status, body)
	}
	status, body = e.post(t, bob, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Mcp-Session-Id": "never-made", "Mcp-Protocol-Version": "2025-11-25"})
	if status != http.StatusNotFound || !strings.Contains(body, "session not found") {
		t.Fatalf("a session the gateway never saw: %d %s", status, body)
	}
	if _, err := callText(t, cs, mcpexample.ToolSearchDocs, map[string]any{"query": "x"}); err != nil {
		t.Fatalf("alice in her own session: %v", err)
	}
}

// A client revoked after connecting is refused on its next request; a
// policy edit applies to live connections.
func TestGatewayRechecksEveryRequest(t *testing.T) {
	e := newEnv(t, envOptions{})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	bob := e.tca.CreateSVID("spiffe://acme.test/client/bob", testca.WithRoles("reader"))
	as := e.connect(t, alice, nil, false)
	bs := e.connect(t, bob, nil, false)
	if _, err := callText(t, bs, mcpexample.ToolSearchDocs, map[string]any{"query": "x"}); err != nil {
		t.Fatal(err)
	}
	// The policy drops search_docs for readers: bob's live session sees it.
	edited := strings.Replace(testPolicy, `"search_docs", `, "", 1)
	if err := os.WriteFile(e.policyF, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.authz.Reload(); err != nil {
		t.Fatal(err)
	}
	_, err := callText(t, bs, mcpexample.ToolSearchDocs, map[string]any{"query": "x"})
	wantRPCError(t, err, mcpauth.CodeDenied, mcpauth.DeniedMessage)

	crl, err := parseCRL(e.tca.CreateCRL(testca.RevokedCerts(alice.Leaf)))
	if err != nil {
		t.Fatal(err)
	}
	e.crl.Set(crl)
	_, err = callText(t, as, "who", nil)
	if err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("revoked alice: %v, want Forbidden", err)
	}
	// A new connection of hers fails at the handshake.
	if _, err := e.client(t, alice).Post(e.url, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)); err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("revoked alice, new connection: %v", err)
	}
}

// Input the gateway cannot pass on faithfully is refused with a JSON-RPC
// error that says why, and reaches no upstream.
func TestGatewayRefusesBadInput(t *testing.T) {
	e := newEnv(t, envOptions{stateless: true, gwOpts: []gateway.Option{gateway.WithMaxBodyBytes(4096)}})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"x"}}}`
	for _, tc := range []struct {
		name, body string
		header     map[string]string
		status     int
		want       string
	}{
		{"batch", "[" + call + "]", nil, 400, `"code":-32600,"message":"invalid request: JSON-RPC batches are not supported; send one message per HTTP request (MCP since 2025-06-18)"`},
		{"case-variant keys", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_record","NAME":"search_docs"}}`, nil, 400, `"code":-32600,"message":"invalid request: keys \"name\" and \"NAME\" differ only in case`},
		{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_record"}}`, nil, 400, `"code":-32600,"message":"invalid request: duplicate key \"method\"`},
		{"not JSON", `{"jsonrpc":`, nil, 400, `"code":-32600`},
		{"not an object", `"hello"`, nil, 400, `"message":"invalid request: a JSON-RPC message is a JSON object"`},
		{"oversized", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("x", 5000) + `"}}`, nil, 413, `"message":"invalid request: the body exceeds 4096 bytes"`},
		{"method header disagrees", call, map[string]string{"Mcp-Method": "tools/list"}, 400, `"code":-32020,"message":"header mismatch: Mcp-Method header value \"tools/list\" does not match body value \"tools/call\""`},
		{"name header disagrees", call, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "whoami"}, 400, `"code":-32020,"message":"header mismatch: Mcp-Name header value \"whoami\" does not match body value \"search_docs\""`},
		{"a name header and no name in the body", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`, map[string]string{"Mcp-Name": "search_docs"}, 400, `"code":-32600,"message":"invalid request: params of tools/call have no name"`},
		{"2026-07-28 without headers", call, map[string]string{"Mcp-Protocol-Version": "2026-07-28"}, 400, `"message":"header mismatch: missing required Mcp-Method header"`},
		{"a request without an id", `{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_record","arguments":{"id":"1"}}}`, nil, 400, `"code":-32600,"message":"invalid request: \"tools/call\" needs an id; only notifications/* are sent without one"`},
		{"params of the wrong shape", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}`, nil, 200, `"code":-32600,"message":"invalid request: params of tools/call: json: cannot unmarshal number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.up.mu.Lock()
			before := len(e.up.headers)
			e.up.mu.Unlock()
			status, body := e.post(t, alice, tc.body, tc.header)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s\nwant %d and %s", status, body, tc.status, tc.want)
			}
			e.up.mu.Lock()
			defer e.up.mu.Unlock()
			if len(e.up.headers) != before {
				t.Error("the refused message reached the upstream")
			}
		})
	}
}

// The client's Authorization, Cookie and any Mcpca-Caller of its own never
// reach the upstream; the gateway's signed assertion does.
func TestGatewayStripsClientCredentials(t *testing.T) {
	e := newEnv(t, envOptions{stateless: true})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	status, body := e.post(t, alice, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"who","arguments":{}}}`,
		map[string]string{"Authorization": "Bearer secret", "Cookie": "s=1", "Mcpca-Caller": "forged", "X-Forwarded-For": "10.0.0.1"})
	if status != 200 || !strings.Contains(body, "spiffe://acme.test/client/alice reader") {
		t.Fatalf("who: %d %s", status, body)
	}
	e.up.mu.Lock()
	defer e.up.mu.Unlock()
	h := e.up.headers[len(e.up.headers)-1]
	for _, k := range []string{"Authorization", "Cookie", "X-Forwarded-For"} {
		if h.Get(k) != "" {
			t.Errorf("the upstream got %s: %q", k, h.Get(k))
		}
	}
	if v := h.Values(gateway.CallerHeader); len(v) != 1 || v[0] == "forged" {
		t.Errorf("the upstream's %s: %q", gateway.CallerHeader, v)
	}
}

// A token-only client passes the gateway as the token's principal; its
// token never reaches the upstream (MCP: no token passthrough), the
// gateway's assertion of the caller does. Without credentials the gateway
// answers the 401 challenge.
func TestGatewayTokensNotPassedUpstream(t *testing.T) {
	is := oauthtest.New(t)
	e := newEnv(t, envOptions{stateless: true, issuer: is})
	c := is.Claims(e.url, "bot", time.Now())
	c["roles"] = []string{"reader"}
	tok := is.Mint(t, c)
	status, body := e.post(t, nil, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"who","arguments":{}}}`,
		map[string]string{"Authorization": "Bearer " + tok})
	if status != 200 || !strings.Contains(body, "spiffe://acme.test/client/bot reader") {
		t.Fatalf("who with a token: %d %s", status, body)
	}
	e.up.mu.Lock()
	h := e.up.headers[len(e.up.headers)-1]
	e.up.mu.Unlock()
	if h.Get("Authorization") != "" {
		t.Errorf("the upstream got the client's token: %q", h.Get("Authorization"))
	}
	before := len(e.up.headers)
	status, body = e.post(t, nil, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	if status != 401 || !strings.Contains(body, `"error":"authentication required"`) {
		t.Fatalf("no credentials: %d %s", status, body)
	}
	status, body = e.post(t, nil, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Authorization": "Bearer " + tok + "x"})
	if status != 401 || !strings.Contains(body, `"error":"invalid_token"`) {
		t.Fatalf("a forged token: %d %s", status, body)
	}
	if len(e.up.headers) != before {
		t.Error("a refused request reached the upstream")
	}
}

// VerifyCaller refuses what a client could send in place of the
// gateway's assertion.
func TestVerifyCallerRefusals(t *testing.T) {
	e := newEnv(t, envOptions{stateless: true})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	e.post(t, alice, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	good, body := e.up.last()
	req := func(v ...string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewReader(body))
		for _, s := range v {
			r.Header.Add(gateway.CallerHeader, s)
		}
		return r
	}
	gwID := gateway.WithGateways("spiffe://acme.test/server/gateway")
	aud := gateway.WithAudience(e.up.url)
	if c, err := gateway.VerifyCaller(req(good), e.verifier, gwID, aud); err != nil || c.ID != "spiffe://acme.test/client/alice" {
		t.Fatalf("the gateway's own assertion: %+v %v", c, err)
	}
	parts := strings.Split(good, ".")
	for name, tc := range map[string]struct {
		r    *http.Request
		opts []gateway.VerifyOption
		want string
	}{
		"none":           {req(), []gateway.VerifyOption{gwID, aud}, "gateway: no Mcpca-Caller header: the request did not come through an mcpca gateway"},
		"two":            {req(good, good), []gateway.VerifyOption{gwID, aud}, "gateway: 2 Mcpca-Caller headers, want one"},
		"garbage":        {req("forged"), []gateway.VerifyOption{gwID, aud}, "gateway: caller assertion: "},
		"altered":        {req(parts[0] + "." + parts[1] + "x." + parts[2]), []gateway.VerifyOption{gwID, aud}, "gateway: caller assertion: "},
		"other gateway":  {req(good), []gateway.VerifyOption{gateway.WithGateways("spiffe://acme.test/server/other"), aud}, "gateway: caller assertion signed by spiffe://acme.test/server/gateway, which is not an accepted gateway"},
		"other audience": {req(good), []gateway.VerifyOption{gwID, gateway.WithAudience("http://elsewhere/mcp")}, `gateway: caller assertion: audience "` + e.up.url + `", want "http://elsewhere/mcp"`},
		"no options":     {req(good), nil, "gateway: VerifyCaller needs WithGateways and WithAudience"},
	} {
		_, err := gateway.VerifyCaller(tc.r, e.verifier, tc.opts...)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// Each request gets an assertion of its own, bound to it: replayed onto
// another body, method or session it is refused with its message; the
// same request sent again is refused by a ReplayCache; it lives ten
// seconds (plus the skew).
func TestCallerAssertionIsBoundToItsRequest(t *testing.T) {
	e := newEnv(t, envOptions{stateless: true})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	e.post(t, alice, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	first, _ := e.up.last()
	e.post(t, alice, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	good, body := e.up.last()
	if first == good {
		t.Fatal("two requests carried the same assertion")
	}
	req := func(method, sid string, body []byte) *http.Request {
		r := httptest.NewRequest(method, "/mcp", bytes.NewReader(body))
		r.Header.Set(gateway.CallerHeader, good)
		if sid != "" {
			r.Header.Set("Mcp-Session-Id", sid)
		}
		return r
	}
	opts := []gateway.VerifyOption{gateway.WithGateways("spiffe://acme.test/server/gateway"), gateway.WithAudience(e.up.url)}
	r := req(http.MethodPost, "", body)
	c, err := gateway.VerifyCaller(r, e.verifier, opts...)
	if err != nil || c.Method != "POST" || c.Session != "" {
		t.Fatalf("the request it was signed for: %+v %v", c, err)
	}
	if got, _ := io.ReadAll(r.Body); !bytes.Equal(got, body) {
		t.Fatalf("the body after VerifyCaller: %q, want %q", got, body)
	}
	now := time.Now()
	for name, tc := range map[string]struct {
		r    *http.Request
		opts []gateway.VerifyOption
		want string
	}{
		"another body":    {req(http.MethodPost, "", []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_record","arguments":{"id":"1"}}}`)), nil, "gateway: caller assertion: signed for another request body (a replayed assertion?)"},
		"no body":         {req(http.MethodPost, "", nil), nil, "gateway: caller assertion: signed for another request body (a replayed assertion?)"},
		"another method":  {req(http.MethodDelete, "", body), nil, `gateway: caller assertion: signed for a "POST" request, not this DELETE (a replayed assertion?)`},
		"another session": {req(http.MethodPost, "s-1", body), nil, `gateway: caller assertion: signed for session "", not this request's "s-1" (a replayed assertion?)`},
		"too large":       {req(http.MethodPost, "", body), []gateway.VerifyOption{gateway.WithVerifyMaxBody(4)}, "gateway: caller assertion: the request body exceeds 4 bytes"},
		"expired":         {req(http.MethodPost, "", body), []gateway.VerifyOption{gateway.WithVerifyClock(clock.NewFake(now.Add(17 * time.Second)))}, "gateway: caller assertion expired at "},
	} {
		_, err := gateway.VerifyCaller(tc.r, e.verifier, append(slices.Clone(opts), tc.opts...)...)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	rc := gateway.NewReplayCache(0)
	withCache := append(slices.Clone(opts), gateway.WithReplayCache(rc))
	if _, err := gateway.VerifyCaller(req(http.MethodPost, "", body), e.verifier, withCache...); err != nil {
		t.Fatalf("first use with a replay cache: %v", err)
	}
	if _, err := gateway.VerifyCaller(req(http.MethodPost, "", body), e.verifier, withCache...); err == nil || err.Error() != "gateway: caller assertion replayed: its jti was already used" {
		t.Fatalf("the same request again: %v", err)
	}
	// A full cache refuses rather than forget an assertion still live.
	full := append(slices.Clone(opts), gateway.WithReplayCache(gateway.NewReplayCache(1)))
	if _, err := gateway.VerifyCaller(req(http.MethodPost, "", body), e.verifier, full...); err != nil {
		t.Fatalf("a cache of one: %v", err)
	}
	e.post(t, alice, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	next, nextBody := e.up.last()
	r = httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewReader(nextBody))
	r.Header.Set(gateway.CallerHeader, next)
	if _, err := gateway.VerifyCaller(r, e.verifier, full...); err == nil || err.Error() != "gateway: caller assertion refused: the replay cache is full (1 assertions, none expired yet)" {
		t.Fatalf("a full cache: %v", err)
	}
}

// Progress notifications of a call reach the client that made it, on the
// call's stream, before its answer.
func TestGatewayPassesProgress(t *testing.T) {
	e := newEnv(t, envOptions{})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	seen := make(chan float64, 8)
	cs := e.connect(t, alice, &mcp.ClientOptions{ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
		seen <- req.Params.Progress
	}}, false)
	res, err := cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: "progress", Meta: mcp.Meta{"progressToken": "p1"}})
	if err != nil || res.IsError {
		t.Fatalf("%+v %v", res, err)
	}
	// The SDK hands notifications to the handler on its own goroutines.
	var got []float64
	for len(got) < 3 {
		select {
		case p := <-seen:
			got = append(got, p)
		case <-time.After(30 * time.Second):
			t.Fatalf("progress seen by the client: %v, want 1, 2 and 3", got)
		}
	}
	slices.Sort(got)
	if got[0] != 1 || got[2] != 3 {
		t.Fatalf("progress seen by the client: %v, want 1, 2 and 3", got)
	}
}
