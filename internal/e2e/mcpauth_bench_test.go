package e2e_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/internal/mcpexample"
)

// callBody is one tools/call of the read-only search_docs tool, which the
// reader may call.
var callBody = fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q,"arguments":{"query":"roles"}}}`, mcpexample.ToolSearchDocs)

// BenchmarkToolCall measures one tools/call round trip over mTLS against
// the example server (stateless Streamable HTTP) in three set-ups side by
// side: the same server and TLS without the adapter (baseline), with the
// adapter writing each audit line to a file before the call proceeds, as
// cmd/mcpca-example does by default (adapter), and with audit lines
// batched every 10ms (--audit-flush 10ms, adapter-batched). Every iteration
// makes one call to each, in rotating order, so that all three see the same
// machine: on a shared machine, running them one after the other measures
// the drift of its load as much as the adapter.
//
// warm reuses one connection per server; new-conn opens one per call (a
// full TLS 1.3 mTLS handshake). It reports each set-up's median latency
// (NAME-p50-us) and the adapters' overhead over the baseline at the median
// (NAME-over-%):
//
//	go test -run '^$' -bench ToolCall -benchtime 3000x ./internal/e2e
//	scripts/bench-mcp.sh
func BenchmarkToolCall(b *testing.B) {
	p := newPKI(b)
	setups := []struct {
		name string
		e    *env
	}{
		{"baseline", startServer(b, p, envOptions{stateless: true, noGuard: true})},
		{"adapter", startServer(b, p, envOptions{stateless: true, auditFile: true})},
		{"adapter-batched", startServer(b, p, envOptions{stateless: true, auditFile: true,
			auditOpts: []audit.Option{audit.WithFlushInterval(10 * time.Millisecond)}})},
	}
	for _, conn := range []string{"warm", "new-conn"} {
		b.Run(conn, func(b *testing.B) {
			clients := make([]*http.Client, len(setups))
			for i, s := range setups {
				clients[i] = s.e.httpClient(p.reader)
				tr := clients[i].Transport.(*http.Transport)
				tr.ForceAttemptHTTP2 = false
				tr.DisableKeepAlives = conn == "new-conn"
				defer tr.CloseIdleConnections()
				roundTrip(b, clients[i], s.e.url) // warm up (and check it works)
			}
			lat := make([][]time.Duration, len(setups))
			for i := range lat {
				lat[i] = make([]time.Duration, 0, b.N)
			}
			n := 0
			for b.Loop() {
				for k := range setups {
					i := (n + k) % len(setups)
					start := time.Now()
					roundTrip(b, clients[i], setups[i].e.url)
					lat[i] = append(lat[i], time.Since(start))
				}
				n++
			}
			p50 := make([]float64, len(setups))
			for i, s := range setups {
				slices.Sort(lat[i])
				p50[i] = float64(lat[i][len(lat[i])/2].Nanoseconds()) / 1e3
				b.ReportMetric(p50[i], s.name+"-p50-us")
				if i > 0 {
					b.ReportMetric((p50[i]-p50[0])/p50[0]*100, s.name+"-over-%")
				}
			}
		})
	}
}

func roundTrip(b *testing.B, hc *http.Client, url string) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(callBody))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "mention") {
		b.Fatalf("tools/call: %d %s %v", resp.StatusCode, body, err)
	}
}
