package audit_test

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/mcpca/mcpca/identity/audit"
)

func ExampleVerify() {
	var buf bytes.Buffer
	log := audit.New(&buf)
	at := time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC)
	for _, tool := range []string{"search", "refund", "delete"} {
		log.Write(audit.Record{
			Time: at, SPIFFEID: "spiffe://example.org/client/alice", Roles: []string{"reader"},
			Method: "tools/call", Target: tool, Decision: "deny",
		})
	}
	n, err := audit.Verify(bytes.NewReader(buf.Bytes()))
	fmt.Println(n, err)

	tampered := strings.Replace(buf.String(), `"target":"refund","decision":"deny"`, `"target":"refund","decision":"allow"`, 1)
	n, err = audit.Verify(strings.NewReader(tampered))
	fmt.Println(n, err)
	// Output:
	// 3 <nil>
	// 1 audit: line 2: record was edited: its hash does not match the prev of line 3
}
