package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFileReplacesWithPermissions(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key.pem")
	if err := WriteFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(b) != "two" || st.Mode().Perm() != 0o600 {
		t.Fatalf("content %q mode %v", b, st.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestWriteFileFailureLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cert.pem")
	if err := WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory where the file should be: rename fails for root too.
	blocked := filepath.Join(dir, "blocked")
	if err := os.MkdirAll(filepath.Join(blocked, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(blocked, []byte("new"), 0o644)
	if err == nil || !strings.Contains(err.Error(), "writing "+blocked) {
		t.Fatalf("got %v", err)
	}
	err = WriteFile(filepath.Join(dir, "missing", "f"), []byte("x"), 0o644)
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("got %v", err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "old" {
		t.Fatalf("old file changed: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temporary file left: %s", e.Name())
		}
	}
}

// WriteFiles renames nothing unless every file was written, and leaves no
// temporary file behind.
func TestWriteFilesAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.pem")
	if err := WriteFile(a, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := WriteFiles(File{Path: a, Data: []byte("new"), Mode: 0o644}, File{Path: filepath.Join(dir, "missing", "b.pem"), Data: []byte("b"), Mode: 0o600})
	if err == nil || err.Error() != "writing "+filepath.Join(dir, "missing", "b.pem")+": no such file or directory" {
		t.Fatalf("got %v", err)
	}
	if b, _ := os.ReadFile(a); string(b) != "old" {
		t.Fatalf("a.pem replaced although b.pem failed: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
	if err := WriteFiles(File{Path: a, Data: []byte("new"), Mode: 0o644}, File{Path: filepath.Join(dir, "b.pem"), Data: []byte("b"), Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "b.pem"))
	if b, _ := os.ReadFile(a); string(b) != "new" || st.Mode().Perm() != 0o600 {
		t.Fatalf("a %q, b mode %v", b, st.Mode())
	}
}
