package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// buildExample builds cmd/mcpca-example once, next to mcpcaBin, for tests
// and scripts.
func buildExample() (string, error) {
	exampleOnce.Do(func() {
		exampleBin = filepath.Join(filepath.Dir(mcpcaBin), "mcpca-example")
		if out, err := exec.Command("go", "build", "-o", exampleBin, "../mcpca-example").CombinedOutput(); err != nil {
			exampleErr = err
			exampleBin = string(out)
		}
	})
	return exampleBin, exampleErr
}

// exampleServe is the script command `example-serve ARGS...`: it starts
// mcpca-example with ARGS (and --listen 127.0.0.1:0) in the script's
// directory, waits for its "serving" line, and sets $MCPURL to its MCP
// endpoint; the server is stopped at the end of the script.
func exampleServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("usage: example-serve ARGS...")
	}
	bin, err := buildExample()
	if err != nil {
		ts.Fatalf("building mcpca-example: %v\n%s", err, bin)
	}
	logs := &lockedBuffer{}
	cmd := exec.Command(bin, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
	cmd.Dir = ts.MkAbs(".")
	cmd.Stderr = logs
	ts.Check(cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	ts.Defer(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		for _, line := range strings.Split(logs.String(), "\n") {
			var l struct{ Msg, MCP string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" {
				ts.Setenv("MCPURL", l.MCP)
				return
			}
		}
		select {
		case <-exited:
			ts.Fatalf("mcpca-example exited: %s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			ts.Fatalf("mcpca-example not serving: %s", logs.String())
		}
	}
}
