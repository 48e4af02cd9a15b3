package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mcpca/mcpca/ca"
)

func TestStoreCheckAndCompactCommands(t *testing.T) {
	s := startServedCA(t)
	fails(t, s.dir, "is locked by another mcpca serve", "store", "check", "--dir", "pki")
	fails(t, s.dir, "is locked by another mcpca serve", "store", "compact", "--dir", "pki")
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { pid, err := ca.ServingPID(filepath.Join(s.dir, "pki")); return pid == 0 && err == nil }, s.stderr.String)
	out := ok(t, s.dir, "store", "check", "--dir", "pki").stdout
	if !strings.Contains(out, "mcpca.db: consistent\nused tokens: 0\ncertificates: 0\nrevoked: 0\n") {
		t.Fatalf("store check printed %q", out)
	}
	out = ok(t, s.dir, "store", "compact", "--dir", "pki").stderr
	if !strings.HasPrefix(out, "compacted "+filepath.Join("pki", "db", "mcpca.db")+": ") {
		t.Fatalf("store compact printed %q", out)
	}
}
