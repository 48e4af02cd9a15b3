package audit_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpca/mcpca/identity/audit"
)

// A client-chosen target of megabytes must not produce a record too long to
// resume or verify: the log must still open after it.
func TestAuditLogBoundsClientChosenValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(path, audit.WithArguments())
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("x", 2<<20)
	if err := l.Write(audit.Record{SPIFFEID: "spiffe://a.test/client/c", Method: "tools/call", Target: huge, Decision: "deny",
		Args: map[string]any{"blob": huge}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = audit.Open(path)
	if err != nil {
		t.Fatalf("reopening after a huge record: %v", err)
	}
	if err := l.Write(audit.Record{SPIFFEID: "spiffe://a.test/client/c", Method: "ping", Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	b, _ := os.ReadFile(path)
	n, err := audit.Verify(bytes.NewReader(b))
	if err != nil || n != 2 {
		t.Fatalf("verify: %d %v", n, err)
	}
	if !bytes.Contains(b, []byte(`...(2097152 bytes, sha256:`)) || !bytes.Contains(b, []byte(`"_truncated":"arguments of`)) {
		t.Fatalf("record not bounded as documented: %.300s", b)
	}
}
