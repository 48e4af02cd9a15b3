package mcpauth_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/internal/mcpexample"
)

// callBody is one tools/call of the read-only search_docs tool, which the
// reader may call.
var callBody = fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q,"arguments":{"query":"roles"}}}`, mcpexample.ToolSearchDocs)

// BenchmarkToolCall measures one tools/call round trip over mTLS against
// the example server (stateless Streamable HTTP), with the adapter
// (certificate check, Cedar decision, audit line appended to a file, as
// cmd/mcpca-example does) and without it (the same
// server and TLS, no adapter), on one warm connection and on a new
// connection per call (full TLS 1.3 mTLS handshake). It reports the median
// as p50-us; compare the adapter and baseline lines of one run:
//
//	go test -run '^$' -bench ToolCall -benchtime 2000x ./identity/mcpauth
//	scripts/bench-mcp.sh
func BenchmarkToolCall(b *testing.B) {
	p := newPKI(b)
	servers := map[string]*env{
		"adapter":  startServer(b, p, envOptions{stateless: true, auditFile: true}),
		"baseline": startServer(b, p, envOptions{stateless: true, noGuard: true}),
	}
	for _, conn := range []string{"warm", "new-conn"} {
		for _, name := range []string{"baseline", "adapter"} {
			e := servers[name]
			b.Run(conn+"/"+name, func(b *testing.B) {
				hc := e.httpClient(p.reader)
				tr := hc.Transport.(*http.Transport)
				tr.ForceAttemptHTTP2 = false
				if conn == "new-conn" {
					tr.DisableKeepAlives = true
				}
				defer tr.CloseIdleConnections()
				roundTrip(b, hc, e.url) // warm up (and check it works)
				lat := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for range b.N {
					start := time.Now()
					roundTrip(b, hc, e.url)
					lat = append(lat, time.Since(start))
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-us")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-us")
			})
		}
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
