package identity_test

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/mcpca/mcpca/identity"
)

func ExampleVerifyLog() {
	var buf bytes.Buffer
	log := identity.NewAuditLog(&buf)
	at := time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC)
	for _, tool := range []string{"search", "refund", "delete"} {
		log.Write(identity.AuditRecord{
			Time: at, SPIFFEID: "spiffe://example.org/client/alice", Roles: []string{"reader"},
			Method: "tools/call", Target: tool, Decision: "deny",
		})
	}
	n, err := identity.VerifyLog(bytes.NewReader(buf.Bytes()))
	fmt.Println(n, err)

	tampered := strings.Replace(buf.String(), `"target":"refund","decision":"deny"`, `"target":"refund","decision":"allow"`, 1)
	n, err = identity.VerifyLog(strings.NewReader(tampered))
	fmt.Println(n, err)
	// Output:
	// 3 <nil>
	// 1 identity: audit log line 2: record was edited: its hash does not match the prev of line 3
}
