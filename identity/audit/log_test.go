package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
)

var auditT0 = time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC)

func auditRecord(i int) Record {
	return Record{
		SPIFFEID: "spiffe://example.org/client/alice", Serial: "1f", Roles: []string{"reader"},
		Method: "tools/call", Target: "search", Decision: "allow", Policies: []string{"p.cedar:3"},
		Source: "192.0.2.1", LatencyUS: float64(i) + 0.5, Args: map[string]any{"q": "secret"},
	}
}

func writeLog(t *testing.T, n int, opts ...Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	l := New(&buf, append([]Option{WithClock(clock.NewFake(auditT0))}, opts...)...)
	for i := range n {
		if err := l.Write(auditRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func lines(b []byte) []string {
	ls := strings.SplitAfter(string(b), "\n")
	return ls[:len(ls)-1]
}

func TestAuditRecordFormat(t *testing.T) {
	got := lines(writeLog(t, 2))
	want0 := `{"seq":1,"prev":"` + Genesis + `","time":"2026-03-04T10:30:00Z","spiffe_id":"spiffe://example.org/client/alice","serial":"1f","roles":["reader"],"method":"tools/call","target":"search","decision":"allow","policies":["p.cedar:3"],"source_address":"192.0.2.1","latency_us":0.5}` + "\n"
	if got[0] != want0 {
		t.Errorf("first line:\n got %s\nwant %s", got[0], want0)
	}
	if !strings.HasPrefix(got[1], `{"seq":2,"prev":"`) || strings.Contains(got[1], Genesis) {
		t.Errorf("second line does not chain: %s", got[1])
	}
	withArgs := lines(writeLog(t, 1, WithArguments()))
	if !strings.Contains(withArgs[0], `"args":{"q":"secret"}`) {
		t.Errorf("WithArguments: args missing: %s", withArgs[0])
	}
	var buf bytes.Buffer
	if err := New(&buf).Write(Record{Method: "ping", Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"roles":[]`) || !strings.Contains(buf.String(), `"policies":[]`) {
		t.Errorf("empty lists not rendered as []: %s", buf.String())
	}
}

func TestVerifyLog(t *testing.T) {
	good := lines(writeLog(t, 5))
	join := func(ls ...string) string { return strings.Join(ls, "") }
	edited := strings.Replace(good[2], `"decision":"allow"`, `"decision":"deny"`, 1)
	tests := []struct {
		name  string
		log   string
		count int
		want  string
	}{
		{"good", join(good...), 5, ""},
		{"empty", "", 0, ""},
		{"edited middle", join(good[0], good[1], edited, good[3], good[4]), 2, "audit: line 3: record was edited: its hash does not match the prev of line 4"},
		{"edited first", join(strings.Replace(good[0], "alice", "mallory", 1), good[1]), 0, "audit: line 1: record was edited: its hash does not match the prev of line 2"},
		{"garbage line", join(good[0], "hello\n", good[2]), 1, "audit: line 2: not an audit record: the line was edited or the log corrupted"},
		{"deleted middle", join(good[0], good[1], good[3], good[4]), 2, "audit: line 3: seq 4 follows seq 2: records deleted"},
		{"deleted first", join(good[1:]...), 0, "audit: line 1: first record has seq 2: records 1-1 were deleted"},
		{"reordered", join(good[0], good[2], good[1], good[3]), 1, "audit: line 2: seq 3 comes before seq 2: records reordered"},
		{"duplicated", join(good[0], good[1], good[1]), 2, "audit: line 3: seq 2 follows seq 2: records reordered or duplicated"},
		{"truncated", join(good[0], good[1], good[2][:40]), 2, "audit: line 3: incomplete last record (no newline): the log was truncated"},
		{"forged genesis", strings.Replace(good[0], Genesis, strings.Repeat("1", 64), 1), 0, "audit: line 1: first record does not chain from the genesis value: the line was edited"},
		{"too long", strings.Repeat("x", maxAuditLine+10) + "\n", 0, "audit: line 1: line longer than 1048576 bytes: not an audit record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Verify(strings.NewReader(tt.log))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
			} else {
				var ae *Error
				if err == nil || err.Error() != tt.want || !errors.As(err, &ae) {
					t.Fatalf("Verify error:\n got %v\nwant %s", err, tt.want)
				}
			}
			if n != tt.count {
				t.Errorf("count = %d, want %d", n, tt.count)
			}
		})
	}
}

func TestOpenAuditLogResumes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	for round := range 3 {
		l, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if err := l.Write(auditRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		if seq, _ := l.Head(); seq != uint64(2*round+2) {
			t.Errorf("round %d: head seq %d", round, seq)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := Verify(f); err != nil || n != 6 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
}

func TestOpenAuditLogRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	torn := filepath.Join(dir, "torn.log")
	os.WriteFile(torn, append(writeLog(t, 2), `{"seq":3,"pr`...), 0o600)
	if _, err := Open(torn); err == nil || err.Error() != "audit: audit log "+torn+": the last record is incomplete (the log was truncated or a write was torn); check it with mcpca audit verify" {
		t.Errorf("torn: %v", err)
	}
	junk := filepath.Join(dir, "junk.log")
	os.WriteFile(junk, []byte("not json\n"), 0o600)
	if _, err := Open(junk); err == nil || err.Error() != "audit: audit log "+junk+": its last line is not an audit record; check it with mcpca audit verify" {
		t.Errorf("junk: %v", err)
	}
	long := filepath.Join(dir, "long.log")
	os.WriteFile(long, append(bytes.Repeat([]byte("x"), maxAuditLine+5), '\n'), 0o600)
	if _, err := Open(long); err == nil || err.Error() != "audit: audit log "+long+": the last record is too long" {
		t.Errorf("long: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "no", "such", "dir.log")); err == nil || !strings.HasPrefix(err.Error(), "audit: opening audit log: ") {
		t.Errorf("missing dir: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("I/O error") }

func TestVerifyLogReadError(t *testing.T) {
	if _, err := Verify(errReader{}); err == nil || err.Error() != "audit: reading audit log: I/O error" {
		t.Errorf("Verify = %v", err)
	}
}

func TestAuditCloseError(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), "a.log"))
	if err != nil {
		t.Fatal(err)
	}
	l.closer.(*os.File).Close() // closed behind the log's back
	if err := l.Close(); err == nil || !strings.HasPrefix(err.Error(), "audit: closing audit log: ") {
		t.Errorf("Close = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestAuditWriteErrors(t *testing.T) {
	l := New(failWriter{})
	if err := l.Write(auditRecord(0)); err == nil || err.Error() != "audit: writing audit log: disk full" {
		t.Errorf("Write = %v", err)
	}
	if err := l.Write(auditRecord(1)); err == nil || err.Error() != "audit: writing audit log: disk full" {
		t.Errorf("second Write = %v", err)
	}
	bad := auditRecord(0)
	bad.Args = map[string]any{"f": func() {}}
	if err := New(&bytes.Buffer{}, WithArguments()).Write(bad); err == nil || !strings.HasPrefix(err.Error(), "audit: encoding audit record: ") {
		t.Errorf("Write(unencodable) = %v", err)
	}
}

func TestAuditConcurrentWrites(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := l.Write(auditRecord(g*100 + i)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n, err := Verify(&buf); err != nil || n != 200 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

// A head recorded elsewhere catches what the chain alone cannot: a log cut
// at a record boundary, and a forgery whose chain was recomputed.
func TestVerifyLogHead(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, WithClock(clock.NewFake(auditT0)))
	for i := range 5 {
		if err := l.Write(auditRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	seq, hash := l.Head()
	good := buf.String()
	// The forger rewrites record 3 and re-chains everything after it.
	var forged bytes.Buffer
	f := New(&forged, WithClock(clock.NewFake(auditT0)))
	for i := range 5 {
		r := auditRecord(i)
		if i == 2 {
			r.Decision = "deny"
		}
		if err := f.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	_, forgedHash := f.Head()
	cut := strings.Join(lines([]byte(good))[:3], "")
	for _, tc := range []struct {
		name, log string
		count     int
		want      string
	}{
		{"good", good, 5, ""},
		{"grown since", good + strings.Join(lines(writeLog(t, 6))[5:], ""), 6, ""},
		{"cut at a record boundary", cut, 3, "audit: line 4: the log ends at seq 3, before the recorded head seq 5: records were removed from its end"},
		{"re-chained forgery", forged.String(), 4, "audit: line 5: record seq 5 hashes to " + forgedHash + ", not to the recorded head " + hash + ": the log was rewritten"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Verify(strings.NewReader(tc.log)); err != nil && tc.name != "grown since" {
				t.Fatalf("without the head the chain verifies, got %v", err)
			}
			n, err := Verify(strings.NewReader(tc.log), WithHead(seq, strings.ToUpper(hash)))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("with the head: %v", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("with the head:\n got %v\nwant %s", err, tc.want)
			}
			if n != tc.count {
				t.Errorf("count %d, want %d", n, tc.count)
			}
		})
	}
	for _, bad := range []string{"", "5", "0:" + hash, "x:" + hash, "5:" + hash[:10], "5:" + strings.Repeat("z", 64)} {
		if _, _, err := ParseHead(bad); err == nil || !strings.HasPrefix(err.Error(), "audit: head ") {
			t.Errorf("ParseHead(%q) = %v", bad, err)
		}
	}
	if s, h, err := ParseHead("5:" + strings.ToUpper(hash)); err != nil || s != 5 || h != hash {
		t.Errorf("ParseHead = %d %s %v", s, h, err)
	}
}
