package mcpauth_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/testca"
)

// stateServer has one tool, search_docs, that asks its caller to confirm
// (an input-required result carrying requestState "asked:<query>") and,
// on the retry, answers with the state it got back.
func stateServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "state", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: mcpexample.ToolSearchDocs, InputSchema: map[string]any{"type": "object"}},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			if req.Params.RequestState == "" {
				return &mcp.CallToolResult{
					InputRequests: mcp.InputRequestMap{"confirm": &mcp.ElicitParams{Message: "search?", RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{}}}},
					RequestState:  "asked:roles",
				}, nil
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "state " + req.Params.RequestState}}}, nil
		})
	return s
}

func connectWith(t *testing.T, url string, tca *testca.CA, cert *tls.Certificate, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	cfg := identity.ClientTLSConfig(identity.StaticCertificate{Cert: cert}, verifierOf(t, tca), identity.WithServerName("127.0.0.1"))
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(hc.CloseIdleConnections)
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, opts).Connect(ctxT(t),
		&mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, DisableStandaloneSSE: true, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// The requestState of an input-required result (protocol 2026-07-28) is
// sealed to the caller it was returned to: the caller's retry reaches the
// handler with the handler's own state; the same state from another
// identity, or altered, is refused before the handler runs.
//
// On a stateful server (protocol 2025-11-25) the SDK's server does the
// round trip itself, through the Guard, and the handler still sees only
// its own state.
func TestRequestStateIsBoundToTheCaller(t *testing.T) {
	t.Run("2026-07-28", func(t *testing.T) { testRequestState(t, true) })
	t.Run("2025-11-25", func(t *testing.T) { testRequestState(t, false) })
}

func testRequestState(t *testing.T, stateless bool) {
	g, tca := offline(t)
	server := tca.CreateSVID("spiffe://acme.test/server/files", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	url := serveGuarded(t, g.Server("127.0.0.1:0", "/mcp", stateServer(), identity.StaticCertificate{Cert: &server.TLS}, &mcp.StreamableHTTPOptions{Stateless: stateless}))
	alice := tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	bob := tca.CreateSVID("spiffe://acme.test/client/bob", testca.WithRoles("reader"))

	// The SDK's client fulfils the input request and retries by itself.
	elicit := func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		return &mcp.ElicitResult{Action: "accept"}, nil
	}
	auto := connectWith(t, url, tca, &alice.TLS, &mcp.ClientOptions{ElicitationHandler: elicit})
	if got, err := call(t, auto, mcpexample.ToolSearchDocs, nil); err != nil || got != "state asked:roles" {
		t.Fatalf("alice's round trip: %q, %v; want the handler's own state back", got, err)
	}
	if !stateless {
		return
	}

	// By hand: the state the client sees is sealed, not the handler's.
	manual := connectWith(t, url, tca, &alice.TLS, &mcp.ClientOptions{ElicitationHandler: elicit, MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}})
	res, err := manual.CallTool(ctxT(t), &mcp.CallToolParams{Name: mcpexample.ToolSearchDocs})
	if err != nil {
		t.Fatal(err)
	}
	sealed := res.RequestState
	if !strings.HasPrefix(sealed, "mcpca1.") || !strings.HasSuffix(sealed, ".asked:roles") {
		t.Fatalf("requestState %q: want it sealed (mcpca1.MAC.asked:roles)", sealed)
	}
	retry := func(cs *mcp.ClientSession, state string) (*mcp.CallToolResult, error) {
		return cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: mcpexample.ToolSearchDocs, RequestState: state,
			InputResponses: mcp.InputResponseMap{"confirm": &mcp.ElicitResult{Action: "accept"}}})
	}
	if res, err := retry(manual, sealed); err != nil || len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != "state asked:roles" {
		t.Fatalf("alice's retry by hand: %+v, %v", res, err)
	}
	other := connectWith(t, url, tca, &bob.TLS, &mcp.ClientOptions{ElicitationHandler: elicit, MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}})
	for name, state := range map[string]string{
		"alice's state from bob": sealed,
		"a state never sealed":   "asked:roles",
		"an altered state":       strings.TrimSuffix(sealed, "roles") + "keys",
	} {
		cs := other
		if name != "alice's state from bob" {
			cs = manual
		}
		_, err := retry(cs, state)
		var je *jsonrpc.Error
		if !errors.As(err, &je) || je.Code != mcpauth.CodeStateRefused || je.Message != mcpauth.StateRefusedMessage {
			t.Errorf("%s: got %v, want %d %q", name, err, mcpauth.CodeStateRefused, mcpauth.StateRefusedMessage)
		}
	}
}

// WithStateKey takes a key of StateKeySize bytes, and nothing else.
func TestStateKeySize(t *testing.T) {
	v := verifierOf(t, testca.NewCA(t, "acme.test"))
	set, err := policy.Load([]string{starterPolicy})
	if err != nil {
		t.Fatal(err)
	}
	_, err = mcpauth.New(v, set, mcpauth.WithStateKey(make([]byte, 16)))
	if err == nil || err.Error() != "mcpauth: the state key must be 32 bytes, got 16" {
		t.Fatalf("16-byte key: %v", err)
	}
	if _, err := mcpauth.New(v, set, mcpauth.WithStateKey(make([]byte, mcpauth.StateKeySize))); err != nil {
		t.Fatal(err)
	}
}
