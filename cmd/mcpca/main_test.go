package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/internal/pgtest"
)

// mcpcaBin is the binary built once for the end-to-end tests of this package.
var mcpcaBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mcpca-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mcpcaBin = filepath.Join(dir, "mcpca")
	build := exec.Command("go", "build", "-o", mcpcaBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building mcpca:", err)
		os.Exit(1)
	}
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary printed.
type result struct {
	stdout, stderr string
	code           int
}

// runIn runs the mcpca binary in dir and returns what it printed.
func runIn(t *testing.T, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mcpcaBin, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running mcpca %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs mcpca and fails the test unless it exits 0.
func ok(t *testing.T, dir string, args ...string) result {
	t.Helper()
	r := runIn(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("mcpca %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs mcpca, wants a non-zero exit and stderr containing msg.
func fails(t *testing.T, dir, msg string, args ...string) result {
	t.Helper()
	r := runIn(t, dir, args...)
	if r.code == 0 || !strings.Contains(r.stderr, msg) {
		t.Fatalf("mcpca %s: want failure with %q, got exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), msg, r.code, r.stdout, r.stderr)
	}
	return r
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// servedCA is a `mcpca serve` process started by a test.
type servedCA struct {
	dir, url, root string
	fingerprint    string
	cmd            *exec.Cmd
	stderr         *syncBuf
}

type syncBuf struct {
	bytes.Buffer
	mu chanMutex
}

type chanMutex chan struct{}

func (m chanMutex) lock()   { m <- struct{}{} }
func (m chanMutex) unlock() { <-m }

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.lock()
	defer b.mu.unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.lock()
	defer b.mu.unlock()
	return b.Buffer.String()
}

// startServedCA runs `mcpca init` and `mcpca serve` in a temp dir and waits
// until the CA answers. The process is stopped (SIGTERM) when the test ends.
func startServedCA(t *testing.T) *servedCA {
	t.Helper()
	// freeAddr's port can be taken by another process before serve binds
	// it: then start over on another port (a few times at most).
	for attempt := 1; ; attempt++ {
		s, err := tryServedCA(t)
		if err == nil {
			return s
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("retrying on another port: %v", err)
	}
}

func tryServedCA(t *testing.T) (*servedCA, error) {
	t.Helper()
	work := t.TempDir()
	addr := freeAddr(t)
	r := ok(t, work, "init", "--dir", "pki", "--name", "Test CA", "--trust-domain", "acme.test", "--address", addr, "--dns", "localhost")
	fp := regexp.MustCompile(`^([0-9a-f]{64})\n$`).FindStringSubmatch(r.stdout)
	if fp == nil || !strings.Contains(r.stderr, "root fingerprint: "+fp[1]) {
		t.Fatalf("init: stdout %q (want only the fingerprint), stderr %q", r.stdout, r.stderr)
	}
	s := &servedCA{dir: work, url: "https://" + addr, root: filepath.Join(work, "pki", "certs", "root_ca.crt"), fingerprint: fp[1], stderr: &syncBuf{mu: make(chanMutex, 1)}}
	s.cmd = exec.Command(mcpcaBin, "serve", "--dir", "pki")
	s.cmd.Dir = work
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-exited
		}
	})
	// Readiness: the serve process logs its start line once listening; then
	// the TLS port answers.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if strings.Contains(s.stderr.String(), `"event":"start"`) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return s, nil
			}
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("mcpca serve exited: %s", s.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("mcpca serve not ready: %s", s.stderr.String())
		}
	}
}

// waitFor polls cond (a cheap in-memory check) until it holds, failing after a
// generous deadline with what describe returns.
func waitFor(t *testing.T, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met: %s", describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
