package policy

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/identity/audit"
)

func TestAuditRecord(t *testing.T) {
	s := compileString(t, basicPolicies)
	p := principal(t, "spiffe://example.org/client/alice", []string{"reader"}, nil)
	r := Request{Method: "tools/call", Target: "search", Time: t0, Source: netip.MustParseAddr("192.0.2.1"), Args: map[string]any{"q": "x"}}
	d := s.Authorize(p, r)
	var buf bytes.Buffer
	if err := audit.New(&buf).Write(AuditRecord(p, r, d, 1500*time.Nanosecond)); err != nil {
		t.Fatal(err)
	}
	want := `"time":"2026-03-04T10:30:00Z","spiffe_id":"spiffe://example.org/client/alice","serial":"1234","auth":"mtls","roles":["reader"],"method":"tools/call","target":"search","decision":"allow","policies":["readers-search"],"source_address":"192.0.2.1","latency_us":1.5}`
	if !strings.HasSuffix(strings.TrimSpace(buf.String()), want) {
		t.Errorf("record:\n got %s\nwant suffix %s", buf.String(), want)
	}
}
