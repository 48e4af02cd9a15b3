package policy

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
)

const (
	allowSearch = `permit(principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource == Mcp::Tool::"search");` + "\n"
	allowFetch  = `permit(principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource == Mcp::Tool::"fetch");` + "\n"
	broken      = `permit(principal in Mcp::Role::"reader", action == Mcp::Action::"tools/cal", resource);` + "\n"
)

// syncBuffer is a log sink safe for the watch goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func allowed(a *Live, p *Principal, tool string) bool {
	return a.Authorize(p, Request{Method: "tools/call", Target: tool, Time: t0}).Allow
}

func TestReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "p.cedar", allowSearch)
	var logs syncBuffer
	a, err := New([]string{f}, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	p := principal(t, "spiffe://td/client/alice", []string{"reader"}, nil)
	if !allowed(a, p, "search") || allowed(a, p, "fetch") {
		t.Fatal("initial policy not in force")
	}

	writeFile(t, dir, "p.cedar", broken)
	err = a.Reload()
	if err == nil || !strings.Contains(err.Error(), "policy: "+f+":1:") || !strings.Contains(err.Error(), `unknown action Mcp::Action::"tools/cal"`) {
		t.Fatalf("Reload error = %v", err)
	}
	if !allowed(a, p, "search") || a.Generation() != 1 {
		t.Error("broken reload replaced the last good policy set")
	}
	if !strings.Contains(logs.String(), "policy reload failed, keeping the last good policy set") || !strings.Contains(logs.String(), "tools/cal") {
		t.Errorf("log does not say why: %s", logs.String())
	}

	writeFile(t, dir, "p.cedar", allowFetch)
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if allowed(a, p, "search") || !allowed(a, p, "fetch") || a.Generation() != 2 {
		t.Error("good reload not in force")
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := New([]string{writeFile(t, dir, "bad.cedar", broken)}); err == nil || !strings.Contains(err.Error(), "bad.cedar:1:") {
		t.Errorf("New(broken) = %v", err)
	}
	if _, err := New([]string{dir + "/missing.cedar"}); err == nil || !strings.HasPrefix(err.Error(), "policy: reading policy file: ") {
		t.Errorf("New(missing) = %v", err)
	}
	a, err := New([]string{writeFile(t, dir, "ok.cedar", allowSearch)}, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := writeRemove(dir + "/ok.cedar"); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err == nil || !strings.HasPrefix(err.Error(), "policy: reading policy file: ") {
		t.Errorf("Reload(missing) = %v", err)
	}
	if a.Set().Len() != 1 {
		t.Error("failed reload dropped the policy set")
	}
}

// step advances the fake clock by d once the watch loop has armed its timer,
// and waits until the loop has finished the check and armed the next one.
func step(t *testing.T, fc *clock.Fake, d time.Duration) {
	t.Helper()
	for {
		ch := fc.Changed()
		if fc.Pending() > 0 {
			break
		}
		<-ch
	}
	changed := fc.Changed()
	fc.Advance(d)
	<-changed
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "p.cedar", allowSearch)
	fc := clock.NewFake(t0)
	var logs syncBuffer
	a, err := New([]string{f}, WithClock(fc), WithPollInterval(time.Second), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Watch(ctx) }()
	p := principal(t, "spiffe://td/client/alice", []string{"reader"}, nil)

	step(t, fc, time.Second) // unchanged: nothing happens
	if a.Generation() != 1 {
		t.Fatalf("generation %d after an unchanged poll", a.Generation())
	}

	writeFile(t, dir, "p.cedar", allowSearch+allowFetch)
	step(t, fc, time.Second)
	if a.Generation() != 2 || !allowed(a, p, "fetch") {
		t.Fatalf("edit not picked up: generation %d", a.Generation())
	}

	writeFile(t, dir, "p.cedar", broken)
	step(t, fc, time.Second)
	step(t, fc, time.Second) // the same broken content is not retried
	if a.Generation() != 2 || !allowed(a, p, "fetch") {
		t.Fatal("broken edit replaced the last good policy set")
	}
	if n := strings.Count(logs.String(), "policy reload failed"); n != 1 {
		t.Errorf("broken edit logged %d times, want once:\n%s", n, logs.String())
	}

	writeFile(t, dir, "p.cedar", allowSearch)
	step(t, fc, time.Second)
	if a.Generation() != 3 || allowed(a, p, "fetch") || !allowed(a, p, "search") {
		t.Fatal("fixed edit not picked up")
	}

	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Watch returned %v", err)
	}
}

func TestDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.cedar", allowSearch)
	writeFile(t, dir, "notes.txt", "not a policy")
	fc := clock.NewFake(t0)
	var logs syncBuffer
	a, err := New([]string{dir}, WithClock(fc), WithPollInterval(time.Minute), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Set().Policies(); len(got) != 1 || got[0].ID != dir+"/a.cedar:1" || len(a.Set().Files()) != 1 {
		t.Fatalf("policies %+v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Watch(ctx)
	p := principal(t, "spiffe://td/client/alice", []string{"reader"}, nil)
	writeFile(t, dir, "b.cedar", allowFetch) // a new file is picked up
	step(t, fc, time.Minute)
	if !allowed(a, p, "fetch") || a.Generation() != 2 {
		t.Fatal("new file in the directory not loaded")
	}
	// A file that cannot be read is logged once, not at every poll.
	// (A directory named like a policy file fails to read, even as root.)
	if err := os.Remove(dir + "/b.cedar"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir+"/b.cedar", 0o700); err != nil {
		t.Fatal(err)
	}
	step(t, fc, time.Minute)
	step(t, fc, time.Minute)
	if n := strings.Count(logs.String(), "cannot read policy files"); n != 1 || !allowed(a, p, "fetch") {
		t.Errorf("unreadable file logged %d times:\n%s", n, logs.String())
	}
}

func TestDuplicateFile(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "a.cedar", allowSearch)
	s, err := Load([]string{f, f, f})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, p := range s.Policies() {
		ids = append(ids, p.ID)
	}
	if want := f + ":1 " + f + ":1:1 " + f + ":1:1#2"; strings.Join(ids, " ") != want {
		t.Errorf("ids %v, want %s", ids, want)
	}
}

func TestReloadOn(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "p.cedar", allowSearch)
	a, err := New([]string{f}, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	c := make(chan os.Signal) // unbuffered: a send completes once the previous reload is done
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.ReloadOn(ctx, c); close(done) }()
	writeFile(t, dir, "p.cedar", allowFetch)
	c <- syscall.SIGHUP
	c <- syscall.SIGHUP
	p := principal(t, "spiffe://td/client/alice", []string{"reader"}, nil)
	if a.Generation() < 2 || !allowed(a, p, "fetch") {
		t.Fatalf("signal did not reload: generation %d", a.Generation())
	}
	if got := a.FilterTools(p, []string{"search", "fetch"}); len(got) != 1 || got[0] != "fetch" {
		t.Errorf("FilterTools = %v", got)
	}
	if got := a.FilterResources(p, []string{"file:///x"}); len(got) != 0 {
		t.Errorf("FilterResources = %v", got)
	}
	if got := a.FilterPrompts(p, []string{"x"}); len(got) != 0 {
		t.Errorf("FilterPrompts = %v", got)
	}
	cancel()
	<-done
	close(c)
	a.ReloadOn(context.Background(), c) // returns when c is closed
}
