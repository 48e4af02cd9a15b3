package secretfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestReadWarnsWhenGroupOrOthersCanRead(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o700, false}, {0o640, true}, {0o604, true}, {0o644, true}} {
		f := filepath.Join(dir, "pw")
		if err := os.WriteFile(f, []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, tc.mode); err != nil {
			t.Fatal(err)
		}
		var w bytes.Buffer
		b, err := Read(f, &w)
		if err != nil || string(b) != "secret\n" {
			t.Fatalf("Read: %q %v", b, err)
		}
		want := ""
		if tc.warn {
			want = "mcpca: warning: " + f + " is readable by group/others (mode " + octal(tc.mode) + "): chmod 600 it\n"
		}
		if w.String() != want {
			t.Errorf("mode %04o: warning %q, want %q", tc.mode, w.String(), want)
		}
	}
	if _, err := Read(filepath.Join(dir, "missing"), &bytes.Buffer{}); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
	if e := Exposure(dir); e != "" {
		t.Fatalf("a directory: %q", e)
	}
}

func octal(m os.FileMode) string {
	return map[os.FileMode]string{0o640: "0640", 0o604: "0604", 0o644: "0644"}[m]
}
