package gateway_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity/gateway"
	"github.com/mcpca/mcpca/internal/testca"
)

const ping = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"x"}}}`

// An upstream that is down, too slow or not MCP gives the caller a JSON-RPC
// error naming the upstream and the problem, within the timeout.
func TestGatewayUpstreamFaults(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/mcp"
	ln.Close()

	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); slow.Close() })
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"hello":"world"}`))
	}))
	t.Cleanup(garbage.Close)
	badList := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"nameless\":true}]}}\n\n"))
	}))
	t.Cleanup(badList.Close)
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>"))
	}))
	t.Cleanup(html.Close)

	for _, tc := range []struct {
		name, upstream, want string
	}{
		{"down", down, `"code":-32030,"message":"upstream ` + down + ` failed: Post \"` + down + `\": dial tcp ` + strings.TrimSuffix(strings.TrimPrefix(down, "http://"), "/mcp") + `: connect: connection refused"`},
		{"slow", slow.URL, `"code":-32030,"message":"upstream ` + slow.URL + ` failed: Post \"` + slow.URL + `\": timeout awaiting response headers (the upstream timeout is 300ms)"`},
		{"garbage", garbage.URL, `"code":-32030,"message":"upstream ` + garbage.URL + ` failed: it answered something that is not a JSON-RPC message (invalid request: `},
		{"html", html.URL, `"code":-32030,"message":"upstream ` + html.URL + ` failed: it answered with content of type \"text/html\", which is not MCP"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{stateless: true, upstream: tc.upstream, gwOpts: []gateway.Option{gateway.WithUpstreamTimeout(300 * time.Millisecond)}})
			alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
			status, body := e.post(t, alice, ping, nil)
			if status != 200 || !strings.Contains(body, `"id":7`) || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %s\nwant %s", status, body, tc.want)
			}
		})
	}
	// A list the gateway cannot read is not passed on: the stream ends
	// before the event, and the client never sees the unfiltered list.
	e := newEnv(t, envOptions{stateless: true, upstream: badList.URL})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	status, body := e.post(t, alice, `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, nil)
	if status != 200 || strings.Contains(body, "nameless") {
		t.Fatalf("an unreadable list: %d %q", status, body)
	}
}

// One identity may not hold more than its share of requests in flight;
// others are not held up by it.
func TestGatewayBoundsRequestsPerIdentity(t *testing.T) {
	e := newEnv(t, envOptions{stateless: true, gwOpts: []gateway.Option{gateway.WithMaxPerIdentity(1)}})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	bob := e.tca.CreateSVID("spiffe://acme.test/client/bob", testca.WithRoles("reader"))
	done := make(chan string, 1)
	go func() {
		_, body := e.post(t, alice, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","arguments":{}}}`, nil)
		done <- body
	}()
	<-e.up.started
	status, body := e.post(t, alice, ping, nil)
	if status != 200 || !strings.Contains(body, `"code":-32031,"message":"too many requests in flight for spiffe://acme.test/client/alice (at most 1 at once): retry when one completes"`) {
		t.Fatalf("alice's second request: %d %s", status, body)
	}
	if status, body := e.post(t, bob, ping, nil); status != 200 || !strings.Contains(body, "mention") && !strings.Contains(body, "no document") {
		t.Fatalf("bob meanwhile: %d %s", status, body)
	}
	e.up.release <- struct{}{}
	if body := <-done; !strings.Contains(body, "released") {
		t.Fatalf("alice's slow call: %s", body)
	}
	if _, body := e.post(t, alice, ping, nil); strings.Contains(body, "-32031") {
		t.Fatalf("alice after her call ended: %s", body)
	}
}

// A client that goes away cancels its request upstream.
func TestGatewayCancelsWhenTheClientGoesAway(t *testing.T) {
	e := newEnv(t, envOptions{})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	cs := e.connect(t, alice, nil, false)
	ctx, cancel := context.WithCancel(ctxT(t))
	errc := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "slow"})
		errc <- err
	}()
	<-e.up.started
	cancel()
	select {
	case <-e.up.canceled:
	case <-time.After(30 * time.Second):
		t.Fatal("the upstream's call was not cancelled")
	}
	if err := <-errc; err == nil {
		t.Fatal("the cancelled call succeeded")
	}
}

// What the upstream answers is checked whatever the event is called, and
// a result key that differs from one the gateway acts on only in case is
// refused (a case-folding client would read it unfiltered).
func TestGatewayChecksEveryUpstreamEvent(t *testing.T) {
	for name, body := range map[string]string{
		"event name with a trailing space": "event: message \ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"delete_record\"},{\"name\":\"search_docs\"}]}}\n\n",
		"a case-variant result key":        "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"Tools\":[{\"name\":\"delete_record\"}]}}\n\n",
	} {
		t.Run(name, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = w.Write([]byte(body))
			}))
			t.Cleanup(up.Close)
			e := newEnv(t, envOptions{stateless: true, upstream: up.URL})
			alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
			status, got := e.post(t, alice, `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, nil)
			if status != 200 || strings.Contains(got, "delete_record") {
				t.Fatalf("%d %q: the reader saw delete_record", status, got)
			}
		})
	}
}

// A header the gateway checks, sent twice, is refused: the gateway and the
// upstream could read different copies.
func TestGatewayRefusesRepeatedHeaders(t *testing.T) {
	e := newEnv(t, envOptions{stateless: true})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPost, e.url, strings.NewReader(ping))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Add("Mcp-Name", "search_docs")
	req.Header.Add("Mcp-Name", "delete_record")
	resp, err := e.client(t, alice).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(b), `"detail":"Mcp-Name appears more than once: send it once"`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

// A client whose resumable stream breaks comes back with Last-Event-ID and
// gets the rest, its call's answer included; its request was not cancelled
// meanwhile (disconnection is not cancellation when it can resume).
func TestGatewayResumesStreams(t *testing.T) {
	e := newEnv(t, envOptions{resumable: true})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	hc := e.client(t, alice)
	do := func(ctx context.Context, method, sid, body, last string) *http.Response {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, e.url, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := do(ctxT(t), http.MethodPost, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, "")
	sid := resp.Header.Get("Mcp-Session-Id")
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if sid == "" {
		t.Fatal("no session")
	}
	do(ctxT(t), http.MethodPost, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, "").Body.Close()

	ctx, cancel := context.WithCancel(ctxT(t))
	resp = do(ctx, http.MethodPost, sid, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","arguments":{}}}`, "")
	br := bufio.NewReader(resp.Body)
	var lastID string
	for lastID == "" {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "id:"); ok {
			lastID = strings.TrimSpace(id)
		}
	}
	<-e.up.started
	cancel() // the client goes away in the middle of the call
	resp.Body.Close()
	e.up.release <- struct{}{}

	resp = do(ctxT(t), http.MethodGet, sid, "", lastID)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("resuming: %d %s", resp.StatusCode, b)
	}
	br = bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("the resumed stream ended before the answer: %v", err)
		}
		if strings.HasPrefix(line, "data:") && strings.Contains(line, `"id":5`) {
			if !strings.Contains(line, "released") {
				t.Fatalf("the answer: %s", line)
			}
			break
		}
	}
	select {
	case <-e.up.canceled:
		t.Fatal("the upstream call was cancelled although the stream could resume")
	default:
	}
}

// Standalone streams have a per-identity bound of their own.
func TestGatewayBoundsStreamsPerIdentity(t *testing.T) {
	e := newEnv(t, envOptions{gwOpts: []gateway.Option{gateway.WithMaxStreamsPerIdentity(1)}})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	cs := e.connect(t, alice, nil, false)
	get := func() *http.Response {
		req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, e.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", cs.ID())
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		resp, err := e.client(t, alice).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first := get()
	defer first.Body.Close()
	if first.StatusCode != 200 {
		t.Fatalf("first stream: %d", first.StatusCode)
	}
	second := get()
	defer second.Body.Close()
	b, _ := io.ReadAll(second.Body)
	if second.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "has 1 standalone streams open (at most 1): close one first") {
		t.Fatalf("second stream: %d %s", second.StatusCode, b)
	}
}
