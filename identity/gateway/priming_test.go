package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpca/mcpca/internal/testca"
)

// The priming event of an upstream with resumable streams (MCP 2025-11-25:
// an event ID and empty data, first on every stream; the TypeScript SDK's
// servers send it when they have an event store) carries no message: it
// passes as it came, and the message after it is relayed, not the stream
// ended.
func TestGatewayPassesPrimingEvents(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("id: prime-1\nretry: 1000\ndata: \n\n" +
			"id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"after priming\"}]}}\n\n"))
	}))
	t.Cleanup(up.Close)
	e := newEnv(t, envOptions{stateless: true, upstream: up.URL})
	alice := e.tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	status, body := e.post(t, alice, ping, nil)
	want := "id: prime-1\nretry: 1000\ndata: \n\nid: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"after priming\"}]}}\n\n"
	if status != 200 || body != want {
		t.Fatalf("%d %q\nwant %q", status, body, want)
	}
	if strings.Contains(body, "-32030") {
		t.Fatal("the priming event was taken for a broken message")
	}
}
