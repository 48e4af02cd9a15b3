package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcpca/mcpca/clock"
)

// waitTimer waits until the flusher has armed its timer on clk.
func waitTimer(t *testing.T, clk *clock.Fake) {
	t.Helper()
	deadline := time.After(time.Minute)
	for clk.Pending() == 0 {
		select {
		case <-clk.Changed():
		case <-deadline:
			t.Fatal("the flusher never armed its timer")
		}
	}
}

func fileRecords(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := Verify(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("log does not verify: %v", err)
	}
	return n
}

func TestAuditFlushIntervalWritesBatchesLater(t *testing.T) {
	// In a synctest bubble the log runs on the system clock, which the
	// bubble fakes: sleeping moves time at once, and synctest.Wait returns
	// when the flusher has done what that time asks, without polling.
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.log")
		l, err := Open(path, WithFlushInterval(10*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		for i := range 3 {
			if err := l.Write(auditRecord(i)); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if n := fileRecords(t, path); n != 0 {
			t.Fatalf("%d records written before the interval passed", n)
		}
		time.Sleep(9 * time.Millisecond)
		synctest.Wait()
		if n := fileRecords(t, path); n != 0 {
			t.Fatalf("%d records written 9ms into a 10ms interval", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := fileRecords(t, path); n != 3 {
			t.Fatalf("%d records written once the interval passed, want 3", n)
		}
	})
}

func TestAuditFlushOnHeadAndClose(t *testing.T) {
	clk := clock.NewFake(auditT0)
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, WithClock(clk), WithFlushInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := l.Write(auditRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if seq, _ := l.Head(); seq != 3 || fileRecords(t, path) != 3 {
		t.Fatalf("Head seq = %d, want 3 and the records written", seq)
	}

	// Head chains and writes what is queued.
	if err := l.Write(auditRecord(3)); err != nil {
		t.Fatal(err)
	}
	if seq, _ := l.Head(); seq != 4 {
		t.Fatalf("Head seq = %d, want 4", seq)
	}
	if n := fileRecords(t, path); n != 4 {
		t.Fatalf("after Head the log has %d records, want 4", n)
	}

	// The next batch: the flusher arms a new timer; Close writes it at once.
	waitTimer(t, clk)
	if err := l.Write(auditRecord(4)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n := fileRecords(t, path); n != 5 {
		t.Fatalf("after Close the log has %d records, want 5", n)
	}
	if err := l.Write(auditRecord(5)); err == nil || !strings.Contains(err.Error(), "audit log is closed") {
		t.Fatalf("Write after Close = %v, want the log is closed", err)
	}
	if err := l.Flush(); err == nil {
		t.Fatal("Flush after Close succeeded")
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	// The chain continues across batches and a reopen.
	l2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Write(auditRecord(6)); err != nil {
		t.Fatal(err)
	}
	l2.Close()
	if n := fileRecords(t, path); n != 6 {
		t.Fatalf("after a reopen the log has %d records, want 6", n)
	}
}

func TestAuditFlushWritesNow(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, WithFlushInterval(time.Hour))
	defer l.Close()
	if err := l.Write(auditRecord(0)); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Fatal("record written before Flush")
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(bytes.NewReader(buf.Bytes())); n != 1 || err != nil {
		t.Fatalf("after Flush: %d records, %v", n, err)
	}
}

func TestAuditQueueBoundWritesWithoutWaiting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, WithArguments(), WithClock(clock.NewFake(auditT0)), WithFlushInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := auditRecord(0)
	r.Args = map[string]any{"blob": strings.Repeat("x", 100<<10)}
	n := 0
	for size := 0; size < maxQueued; size += 100 << 10 {
		if err := l.Write(r); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if got := fileRecords(t, path); got != n {
		t.Fatalf("with %d bytes queued the file has %d records, want all %d", maxQueued, got, n)
	}
}

func TestAuditFlushErrorIsSticky(t *testing.T) {
	l := New(failWriter{}, WithFlushInterval(time.Hour))
	if err := l.Write(auditRecord(0)); err != nil {
		t.Fatalf("queued Write = %v", err)
	}
	const want = "audit: writing audit log: disk full"
	if err := l.Flush(); err == nil || err.Error() != want {
		t.Fatalf("Flush = %v, want %q", err, want)
	}
	if err := l.Write(auditRecord(1)); err == nil || err.Error() != want {
		t.Fatalf("Write after a failed flush = %v, want %q", err, want)
	}
	if err := l.Close(); err == nil || err.Error() != want {
		t.Fatalf("Close = %v, want %q", err, want)
	}
}

func TestAuditFlushConcurrentWrites(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	l := New(w, WithFlushInterval(time.Microsecond))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if err := l.Write(auditRecord(g*1000 + i)); err != nil {
					t.Error(err)
				}
				if i%50 == 0 {
					if err := l.Flush(); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := Verify(&buf); err != nil || n != 800 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A log Open refuses leaves no flusher running.
func TestAuditFlushRefusedOpenStartsNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte("not a record\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for range 20 {
		if _, err := Open(path, WithFlushInterval(time.Hour)); err == nil || !strings.Contains(err.Error(), "not an audit record") {
			t.Fatalf("Open = %v", err)
		}
	}
	if after := runtime.NumGoroutine(); after >= before+20 {
		t.Fatalf("goroutines: %d before, %d after 20 refused opens", before, after)
	}
}

// A writer that takes part of a line without an error is a failed write,
// in both modes, and the log stays failed.
func TestAuditShortWrite(t *testing.T) {
	short := writerFunc(func(p []byte) (int, error) { return len(p) / 2, nil })
	const want = "audit: writing audit log: short write"
	l := New(short)
	if err := l.Write(auditRecord(0)); err == nil || err.Error() != want {
		t.Fatalf("Write = %v, want %q", err, want)
	}
	if err := l.Write(auditRecord(1)); err == nil || err.Error() != want {
		t.Fatalf("second Write = %v, want %q", err, want)
	}
	b := New(short, WithFlushInterval(time.Hour))
	defer b.Close()
	if err := b.Write(auditRecord(0)); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err == nil || err.Error() != want {
		t.Fatalf("Flush = %v, want %q", err, want)
	}
}
