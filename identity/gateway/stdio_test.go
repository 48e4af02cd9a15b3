package gateway_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/gateway"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/testca"
)

// The test binary doubles as the stdio MCP server behind the gateway: run
// with MCPCA_GATEWAY_STDIO=1 it serves the example server's tools plus
// ask (elicits), pid (its process id) and crash (exits mid-call) on its
// standard input and output.
func TestMain(m *testing.M) {
	if os.Getenv("MCPCA_GATEWAY_STDIO") == "1" {
		serveStdio()
		return
	}
	os.Exit(m.Run())
}

func serveStdio() {
	s := mcpexample.NewServer()
	obj := map[string]any{"type": "object"}
	s.AddTool(&mcp.Tool{Name: "ask", InputSchema: obj}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "your name?",
			RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}}})
		if err != nil {
			return nil, err
		}
		return textResult(fmt.Sprintf("%s: %v", res.Action, res.Content["name"])), nil
	})
	s.AddTool(&mcp.Tool{Name: "pid", InputSchema: obj}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return textResult(fmt.Sprint(os.Getpid())), nil
	})
	s.AddTool(&mcp.Tool{Name: "chatty", InputSchema: obj}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		for i := range 64 {
			_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i)})
		}
		return textResult("said a lot"), nil
	})
	s.AddTool(&mcp.Tool{Name: "flood", InputSchema: obj}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		big := strings.Repeat("x", 64<<10)
		for i := range 32 {
			_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Message: big})
		}
		return textResult("flooded"), nil
	})
	s.AddTool(&mcp.Tool{Name: "caller", InputSchema: obj}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return textResult(os.Getenv("MCPCA_CALLER") + " " + os.Getenv("MCPCA_CALLER_ROLES") + " " + os.Getenv("MCPCA_CALLER_ATTR_TEAM")), nil
	})
	s.AddTool(&mcp.Tool{Name: "crash", InputSchema: obj}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		os.Exit(3)
		return nil, nil
	})
	_ = s.Run(context.Background(), &mcp.StdioTransport{})
}

const stdioPolicy = `
@id("list") permit (principal, action == Mcp::Action::"tools/list", resource);
@id("readers") permit (principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource)
  when { ["search_docs", "ask", "pid", "crash", "caller"].contains(resource.name) };
`

// postStdio sends the JSON-RPC message body to up as a POST of session
// sid ("": none) and returns the answer.
func postStdio(t *testing.T, up *gateway.Stdio, sid, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPost, "http://stdio/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	resp, err := up.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func newStdio(t *testing.T, opts ...gateway.StdioOption) *gateway.Stdio {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	up, err := gateway.NewStdio([]string{exe}, append([]gateway.StdioOption{gateway.WithEnv(append(os.Environ(), "MCPCA_GATEWAY_STDIO=1")),
		gateway.WithStdioLogger(slog.New(slog.DiscardHandler))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Close() })
	return up
}

// A stdio server behind the gateway: each session its own process (never
// one for two identities), lists filtered, denials, an elicitation round
// trip, a process that dies mid-call failing that call with a message and
// the next session getting a fresh process, processes stopped with their
// sessions.
func TestGatewayStdioUpstream(t *testing.T) {
	up := newStdio(t)
	e := newEnv(t, envOptions{policy: stdioPolicy, upstream: up.URL(), gwOpts: []gateway.Option{gateway.WithHTTPClient(&http.Client{Transport: up})}})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	bob := e.tca.CreateSVID("spiffe://acme.test/client/bob", testca.WithRoles("reader"))
	elicit := &mcp.ClientOptions{ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Alice"}}, nil
	}}
	as := e.connect(t, alice, elicit, false)
	bs := e.connect(t, bob, nil, false)
	if got := strings.Join(toolNames(t, as), ","); got != "ask,caller,crash,pid,search_docs" {
		t.Errorf("alice's tools: %s", got)
	}
	_, err := callText(t, as, mcpexample.ToolDeleteRecord, map[string]any{"id": "1"})
	wantRPCError(t, err, mcpauth.CodeDenied, mcpauth.DeniedMessage)
	if got, err := callText(t, as, "ask", nil); err != nil || got != "accept: Alice" {
		t.Fatalf("elicitation through stdio: %q %v", got, err)
	}
	pa, err := callText(t, as, "pid", nil)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := callText(t, bs, "pid", nil)
	if err != nil {
		t.Fatal(err)
	}
	if pa == pb || up.Processes() != 2 {
		t.Fatalf("alice's process %s, bob's %s, %d running: want one each", pa, pb, up.Processes())
	}

	// Alice's process dies mid-call: her call fails saying so; bob's
	// session goes on; alice's next session gets a new process.
	_, err = callText(t, as, "crash", nil)
	wantRPCError(t, err, gateway.CodeUpstream, "the stdio upstream "+up.URL()+" ended (exit status 3) during the call")
	if got, err := callText(t, bs, "pid", nil); err != nil || got != pb {
		t.Fatalf("bob after alice's crash: %q %v", got, err)
	}
	as2 := e.connect(t, alice, nil, false)
	if p2, err := callText(t, as2, "pid", nil); err != nil || p2 == pa {
		t.Fatalf("alice's new session: process %q (was %s), %v", p2, pa, err)
	}
	// Ending a session stops its process.
	_ = bs.Close()
	deadline := time.Now().Add(30 * time.Second)
	for up.Processes() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d processes after bob's session ended, want 1", up.Processes())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A 2026-07-28 request without a session, to a stdio upstream, gets a
// JSON-RPC error that says what the upstream needs.
func TestGatewayStdioNeedsASession(t *testing.T) {
	up := newStdio(t)
	e := newEnv(t, envOptions{policy: stdioPolicy, upstream: up.URL(), gwOpts: []gateway.Option{gateway.WithHTTPClient(&http.Client{Transport: up})}})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	status, body := e.post(t, alice, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, nil)
	if status != 200 || !strings.Contains(body, `"code":-32030,"message":"the stdio upstream `+up.URL()+` serves MCP sessions only: send initialize first, and its Mcp-Session-Id with every request"`) {
		t.Fatalf("%d %s", status, body)
	}
	if up.Processes() != 0 {
		t.Errorf("%d processes started for a refused request", up.Processes())
	}
}

// A client that stops reading its stream holds up only that stream: the
// other sessions of the stdio upstream go on, and so do new ones.
func TestStdioStalledReaderHoldsUpNoOne(t *testing.T) {
	up := newStdio(t)
	rt := func(sid, body string) *http.Response { t.Helper(); return postStdio(t, up, sid, body) }
	const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	open := func() string {
		resp := rt("", initialize)
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		sid := resp.Header.Get("Mcp-Session-Id")
		rt(sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`).Body.Close()
		return sid
	}
	stalled := open()
	resp := rt(stalled, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"chatty","arguments":{},"_meta":{"progressToken":"p"}}}`)
	// Never read until the end: 64 progress notifications pile up.
	done := make(chan string, 1)
	go func() {
		sid := open()
		resp := rt(sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"pid","arguments":{}}}`)
		b, _ := io.ReadAll(resp.Body)
		done <- string(b)
	}()
	select {
	case b := <-done:
		if !strings.Contains(b, `"result"`) {
			t.Fatalf("the other session's call: %s", b)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a stalled reader in one session held up another session")
	}
	// Its client goes away at last: the session's reader is not stuck on
	// it, and the upstream stops.
	resp.Body.Close()
	closed := make(chan error, 1)
	go func() { closed <- up.Close() }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close hung on the stalled session")
	}
}

// A process that floods a client that does not read: what waits for the
// client is bounded by bytes (WithMaxStreamBytes) as well as by count;
// after waiting for the client, the gateway closes the stream with a
// JSON-RPC error for the call, saying why, and the session goes on.
func TestStdioStreamBoundedByBytes(t *testing.T) {
	fk := clock.NewFake(time.Now())
	up := newStdio(t, gateway.WithMaxStreamBytes(256<<10), gateway.WithStdioClock(fk))
	rt := func(sid, body string) *http.Response { t.Helper(); return postStdio(t, up, sid, body) }
	resp := rt("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	sid := resp.Header.Get("Mcp-Session-Id")
	rt(sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`).Body.Close()
	flood := rt(sid, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"flood","arguments":{},"_meta":{"progressToken":"p"}}}`)
	defer flood.Body.Close()
	// Nobody reads: 32 messages of 64 KiB come, at most 256 KiB wait, and
	// the process's messages wait for the client (a timer is armed).
	for {
		changed := fk.Changed()
		if fk.Pending() > 0 {
			break
		}
		select {
		case <-changed:
		case <-time.After(30 * time.Second):
			t.Fatal("the stdio session never waited for the stalled client")
		}
	}
	fk.Advance(11 * time.Second)
	b, err := io.ReadAll(flood.Body)
	if err != nil {
		t.Fatal(err)
	}
	events := strings.Split(strings.TrimSpace(string(b)), "\n\n")
	want := `data: {"error":{"code":-32030,"message":"the gateway closed this stream: its client did not read the stdio upstream's messages within 10s, and at most 262144 bytes or 16 messages wait for a client"},"id":2,"jsonrpc":"2.0"}`
	if last := events[len(events)-1]; last != want {
		t.Fatalf("the stream ended with %.300q, want %q", last, want)
	}
	if n := len(events) - 1; n < 1 || n > 5 || strings.Contains(string(b), "flooded") {
		t.Fatalf("%d progress messages before the error (want 1 to 5: what 256 KiB hold, and the one being written), result in it: %v", n, strings.Contains(string(b), "flooded"))
	}
	t.Logf("%d progress messages, then the error", len(events)-1)
	// The session goes on.
	b, err = io.ReadAll(rt(sid, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"pid","arguments":{}}}`).Body)
	if err != nil || !strings.Contains(string(b), `"result"`) {
		t.Fatalf("the next call in the session: %s %v", b, err)
	}
}

// A stdio process knows whom it serves (MCPCA_CALLER...), whatever its
// environment claimed; one identity holds at most its share of processes,
// making way with its own, never another's.
func TestStdioCallerAndShare(t *testing.T) {
	up := newStdio(t, gateway.WithMaxProcessesPerCaller(1), gateway.WithEnv(append(os.Environ(), "MCPCA_GATEWAY_STDIO=1", "MCPCA_CALLER=spiffe://acme.test/client/forged")))
	e := newEnv(t, envOptions{policy: stdioPolicy, upstream: up.URL(), gwOpts: []gateway.Option{gateway.WithHTTPClient(&http.Client{Transport: up})}})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader", "auditor"), testca.WithAttributes(map[string]string{"team": "payments"}))
	bob := e.tca.CreateSVID("spiffe://acme.test/client/bob", testca.WithRoles("reader"))
	a1 := e.connect(t, alice, nil, false)
	if got, err := callText(t, a1, "caller", nil); err != nil || got != "spiffe://acme.test/client/alice reader,auditor payments" {
		t.Fatalf("the process's caller: %q %v", got, err)
	}
	bs := e.connect(t, bob, nil, false)
	pb, err := callText(t, bs, "pid", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Alice's second session takes the place of her first, not bob's.
	a2 := e.connect(t, alice, nil, false)
	if _, err := callText(t, a2, "pid", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := callText(t, bs, "pid", nil); err != nil || got != pb {
		t.Fatalf("bob's process after alice's second session: %q %v (was %s)", got, err, pb)
	}
	if _, err := callText(t, a1, "pid", nil); err == nil {
		t.Fatal("alice's first session still has its process")
	}
	if n := up.Processes(); n != 2 {
		t.Fatalf("%d processes, want alice's one and bob's one", n)
	}
}
