package gateway_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

// benchFilterPolicy lets everyone list tools and readers call the tools
// whose name starts with "read_" plus three named ones: half of the
// benchmark's list is kept, the other half removed.
const benchFilterPolicy = `
@id("list") permit (principal, action == Mcp::Action::"tools/list", resource);
@id("readers") permit (principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource)
  when { resource.name like "read_*" || ["write_1", "write_3", "write_5"].contains(resource.name) };
@id("no-secrets") forbid (principal, action == Mcp::Action::"tools/call", resource)
  when { resource.name like "*_secret" };
`

// benchToolsResult is a tools/list result of n tools as an upstream sends
// it: name, description and an input schema each, half read_*, half write_*.
func benchToolsResult(b *testing.B, n int) json.RawMessage {
	b.Helper()
	type tool struct {
		Name        string         `json:"name"`
		Description string         `json:"description"`
		InputSchema map[string]any `json:"inputSchema"`
	}
	tools := make([]tool, n)
	for i := range tools {
		kind := "read"
		if i%2 == 1 {
			kind = "write"
		}
		tools[i] = tool{Name: fmt.Sprintf("%s_%d", kind, i), Description: fmt.Sprintf("Tool number %d of the benchmark's upstream.", i),
			InputSchema: map[string]any{"type": "object", "properties": map[string]any{"query": map[string]any{"type": "string"}}, "required": []string{"query"}}}
	}
	raw, err := json.Marshal(map[string]any{"tools": tools, "nextCursor": ""})
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkFilterResult1000 is the gateway's cost of filtering a tools/list
// result of 1,000 tools for one caller: Guard.FilterResult on the raw JSON
// result, as the gateway calls it on the upstream's answer (strict JSON
// reading, one policy decision per tool, the kept list re-encoded). The
// goal is at most 1 ms per list.
func BenchmarkFilterResult1000(b *testing.B) {
	tca := testca.NewCA(b, "acme.test")
	bundle, err := trust.NewBundle([]*x509.Certificate{tca.Root()})
	if err != nil {
		b.Fatal(err)
	}
	v, err := identity.NewVerifier(trust.NewBundleStore(bundle), identity.WithTrustDomains("acme.test"))
	if err != nil {
		b.Fatal(err)
	}
	pf := filepath.Join(b.TempDir(), "policy.cedar")
	if err := os.WriteFile(pf, []byte(benchFilterPolicy), 0o600); err != nil {
		b.Fatal(err)
	}
	set, err := policy.New([]string{pf}, policy.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	guard, err := mcpauth.New(v, set, mcpauth.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	alice := tca.CreateSVID("spiffe://acme.test/client/alice", testca.WithRoles("reader"))
	r := httptest.NewRequest("POST", "https://127.0.0.1/mcp", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: alice.Chain}
	caller, err := guard.Authenticate(r)
	if err != nil {
		b.Fatal(err)
	}
	result := benchToolsResult(b, 1000)

	out, err := guard.FilterResult(caller, result)
	if err != nil {
		b.Fatal(err)
	}
	var got struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(out, &got); err != nil || len(got.Tools) != 503 {
		b.Fatalf("filtered list: %d tools, %v; want 500 read_* and write_1, write_3, write_5", len(got.Tools), err)
	}
	b.SetBytes(int64(len(result)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := guard.FilterResult(caller, result); err != nil {
			b.Fatal(err)
		}
	}
}
