package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestScripts runs the CLI scripts of testdata/script (testscript's txtar
// format, as age's CLI tests): the built mcpca binary on PATH, each script
// in a fresh directory, asserting exit codes, stdout and stderr. The
// command `ca-serve` creates a CA in ./pki and serves it on a free loopback
// port for the rest of the script ($CAURL, $ROOT), stopping it at the end.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", filepath.Dir(mcpcaBin)+string(os.PathListSeparator)+env.Getenv("PATH"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"ca-serve": caServe},
	})
}

// lockedBuffer is a bytes.Buffer safe for a process writing while the
// script reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func caServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: ca-serve")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	addr := ln.Addr().String()
	ts.Check(ln.Close())
	dir := ts.MkAbs(".")
	init := exec.Command(mcpcaBin, "init", "--dir", "pki", "--name", "Script CA", "--trust-domain", "acme.test", "--address", addr, "--dns", "localhost")
	init.Dir = dir
	if out, err := init.CombinedOutput(); err != nil {
		ts.Fatalf("mcpca init: %v\n%s", err, out)
	}
	logs := &lockedBuffer{}
	serve := exec.Command(mcpcaBin, "serve", "--dir", "pki")
	serve.Dir = dir
	serve.Stderr = logs
	ts.Check(serve.Start())
	exited := make(chan struct{})
	go func() { _ = serve.Wait(); close(exited) }()
	ts.Defer(func() {
		_ = serve.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = serve.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		if strings.Contains(logs.String(), `"event":"start"`) {
			if c, err := net.Dial("tcp", addr); err == nil {
				_ = c.Close()
				break
			}
		}
		select {
		case <-exited:
			ts.Fatalf("mcpca serve exited: %s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			ts.Fatalf("mcpca serve not ready: %s", logs.String())
		}
	}
	ts.Setenv("CAURL", "https://"+addr)
	ts.Setenv("ROOT", filepath.Join(dir, "pki", "certs", "root_ca.crt"))
}
