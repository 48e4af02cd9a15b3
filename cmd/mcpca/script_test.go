package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/mcpca/mcpca/ca"
)

// TestScripts runs the CLI scripts of testdata/script (testscript's txtar
// format, as age's CLI tests): the built mcpca binary on PATH, each script
// in a fresh directory, asserting exit codes, stdout and stderr. The
// command `ca-serve` creates a CA in ./pki and serves it on a free loopback
// port for the rest of the script ($CAURL, $CAADDR, $ROOT), stopping it at
// the end; `ca-serve DIR` another in ./DIR ($CAURL_DIR, $CAADDR_DIR,
// $ROOT_DIR). `ca-reload [DIR]` sends it SIGHUP and waits until it has
// reloaded.
// `example-serve ARGS...` starts mcpca-example ($MCPURL).
// `ca-log [DIR] REGEXP` waits until the CA's log has a line matching REGEXP.
// `replace FILE OLD NEW` replaces OLD (which must be there) in FILE, e.g. to
// edit config/mcpca.json; `sleep DURATION` waits.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", filepath.Dir(mcpcaBin)+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Values[caKey{}] = map[string]*caState{}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"ca-serve":      caServe,
			"ca-reload":     caReload,
			"replace":       replace,
			"example-serve": exampleServe,
			"ca-log":        caLog,
		},
	})
}

// caKey keys a script's CAs (map[string]*caState, by directory) in its
// testscript values.
type caKey struct{}

// caState is the CA a script's ca-serve started.
type caState struct {
	proc *os.Process
	logs *lockedBuffer
}

// reloadEvent is what serve logs on each reload, done or failed.
const reloadEvent = `"event":"reload"`

func caReload(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) > 1 {
		ts.Fatalf("usage: ca-reload [DIR]")
	}
	dir := "pki"
	if len(args) == 1 {
		dir = args[0]
	}
	st := ts.Value(caKey{}).(map[string]*caState)[dir]
	if st == nil {
		ts.Fatalf("ca-reload: no ca-serve of %s before", dir)
	}
	// Wait for the reload of the file as it is now: a reload the CA was
	// already doing (provisioner add asks for one) may have read it before
	// the script's last edit.
	b, err := os.ReadFile(ca.Layout{Dir: ts.MkAbs(dir)}.SettingsFile())
	ts.Check(err)
	sum := sha256.Sum256(b)
	want := `"settings":"` + hex.EncodeToString(sum[:8]) + `"`
	from := len(st.logs.String())
	ts.Check(st.proc.Signal(syscall.SIGHUP))
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, line := range strings.Split(st.logs.String()[from:], "\n") {
			switch {
			case strings.Contains(line, "reload failed"):
				ts.Fatalf("mcpca serve failed to reload: %s", line)
			case strings.Contains(line, reloadEvent) && strings.Contains(line, want):
				return
			}
		}
		if time.Now().After(deadline) {
			ts.Fatalf("mcpca serve did not reload %s as it is now: %s", dir, st.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func replace(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: replace FILE OLD NEW")
	}
	file := ts.MkAbs(args[0])
	b, err := os.ReadFile(file)
	ts.Check(err)
	if !strings.Contains(string(b), args[1]) {
		ts.Fatalf("%s does not contain %q", args[0], args[1])
	}
	ts.Check(os.WriteFile(file, []byte(strings.Replace(string(b), args[1], args[2], 1)), 0o644))
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
	if neg || len(args) > 1 {
		ts.Fatalf("usage: ca-serve [DIR]")
	}
	pki, suffix := "pki", ""
	if len(args) == 1 {
		pki, suffix = args[0], "_"+args[0]
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	addr := ln.Addr().String()
	ts.Check(ln.Close())
	dir := ts.MkAbs(".")
	init := exec.Command(mcpcaBin, "init", "--dir", pki, "--name", "Script CA "+pki, "--trust-domain", "acme.test", "--address", addr, "--dns", "localhost")
	init.Dir = dir
	if out, err := init.CombinedOutput(); err != nil {
		ts.Fatalf("mcpca init: %v\n%s", err, out)
	}
	logs := &lockedBuffer{}
	serve := exec.Command(mcpcaBin, "serve", "--dir", pki)
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
	ts.Value(caKey{}).(map[string]*caState)[pki] = &caState{proc: serve.Process, logs: logs}
	ts.Setenv("CAURL"+suffix, "https://"+addr)
	ts.Setenv("CAADDR"+suffix, addr)
	ts.Setenv("ROOT"+suffix, filepath.Join(dir, pki, "certs", "root_ca.crt"))
}
