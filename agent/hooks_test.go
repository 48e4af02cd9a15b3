//go:build unix

package agent

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
)

func TestHooksRunExactlyOncePerRenewal(t *testing.T) {
	ca := newTestCA(t)
	fk := clock.NewFake(t0)
	dir := t.TempDir()
	log := filepath.Join(dir, "runs")
	failing := &Command{Argv: []string{"sh", "-c", "echo failing >> " + log + "; exit 3"}}
	counting := &Command{Argv: []string{"sh", "-c", "echo ok >> " + log}}
	hooks := NewHooks(quiet, failing, counting)
	r := &countingRenewer{Next: renewerOf(ca, fk.Now, time.Hour)}
	armed := newArmed()
	s, err := NewSource(ca.Cert("web", t0, t0.Add(time.Hour)), r, WithClock(fk), WithRenewAt(0.5),
		WithJitter(0), WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	s.Subscribe(hooks.Notify)
	runSource(t, s)
	armed.next(t)
	const renewals = 3
	for i := 0; i < renewals; i++ {
		fk.Advance(30 * time.Minute)
		at := armed.next(t) // hooks run before the next renewal is armed
		if want := fk.Now().Add(30 * time.Minute); !at.Equal(want) {
			t.Fatalf("a failing hook changed the schedule: next at %v, want %v", at, want)
		}
	}
	armed.none(t)
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), strings.Repeat("failing\nok\n", renewals); got != want {
		t.Fatalf("hook runs:\n%s\nwant:\n%s", got, want)
	}
	if r.Calls.Load() != renewals || hooks.Runs() != 2*renewals || hooks.Failures() != renewals {
		t.Fatalf("calls %d, hook runs %d, failures %d", r.Calls.Load(), hooks.Runs(), hooks.Failures())
	}
}

func TestCommandHookErrors(t *testing.T) {
	tests := []struct {
		name string
		c    Command
		want string
	}{
		{"no command", Command{}, "agent: hook: no command"},
		{"exit status with output", Command{Argv: []string{"sh", "-c", "echo nginx: bad config >&2; exit 2"}}, `agent: hook "sh -c echo nginx: bad config >&2; exit 2": exit status 2: nginx: bad config`},
		{"exit status", Command{Argv: []string{"false"}}, `agent: hook "false": exit status 1`},
		{"not found", Command{Argv: []string{"/nonexistent/reload"}}, `agent: hook "/nonexistent/reload": fork/exec /nonexistent/reload: no such file or directory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.c.Run(context.Background(), nil); err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCommandHookGetsEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	c := &Command{Argv: []string{"sh", "-c", `printf %s "$MCPCA_CERT_FILE" > ` + out}, Env: []string{"MCPCA_CERT_FILE=/etc/x.pem"}}
	if err := c.Run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "/etc/x.pem" {
		t.Fatalf("env: %q", b)
	}
}

func TestSignalHook(t *testing.T) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGUSR1)
	defer signal.Stop(ch)
	if err := (&Signal{PID: os.Getpid(), Signal: syscall.SIGUSR1}).Run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	<-ch
	pidFile := filepath.Join(t.TempDir(), "app.pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	if err := (&Signal{PIDFile: pidFile, Signal: syscall.SIGUSR1}).Run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	<-ch
}

func TestSignalHookErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pid")
	os.WriteFile(bad, []byte("nginx\n"), 0o644)
	missing := filepath.Join(dir, "missing.pid")
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	gonePID := gone.Process.Pid
	tests := []struct {
		name string
		s    Signal
		want string
	}{
		{"no pid", Signal{}, "agent: signal hook: no process id"},
		{"missing pid file", Signal{PIDFile: missing}, "agent: signal hook: reading pid file: open " + missing + ": no such file or directory"},
		{"bad pid file", Signal{PIDFile: bad}, "agent: signal hook: pid file " + bad + " does not hold a process id"},
		{"no such process", Signal{PID: gonePID}, "agent: signal hook: sending hangup to process " + strconv.Itoa(gonePID) + ": no such process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.s.Run(context.Background(), nil); err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"HUP": syscall.SIGHUP, "sigusr1": syscall.SIGUSR1, " TERM ": syscall.SIGTERM, "10": syscall.Signal(10), "SIGUSR2": syscall.SIGUSR2} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseSignal("RELOAD"); err == nil || err.Error() != `agent: unknown signal "RELOAD"` {
		t.Fatalf("err = %v", err)
	}
}

func TestHooksStopWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := filepath.Join(t.TempDir(), "started")
	if err := syscall.Mkfifo(started, 0o600); err != nil {
		t.Fatal(err)
	}
	hook := &Command{Argv: []string{"sh", "-c", "echo > " + started + "; exec sleep 1000"}, Timeout: time.Hour}
	second := &Command{Argv: []string{"true"}}
	h := NewHooks(quiet, hook, second)
	done := make(chan struct{})
	go func() { h.Run(ctx, nil); close(done) }()
	// Cancel once the command runs: reading the fifo waits for its write.
	if _, err := os.ReadFile(started); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if h.Runs() != 1 || h.Failures() != 1 {
		t.Fatalf("runs %d failures %d: the second hook ran after shutdown", h.Runs(), h.Failures())
	}
	err := hook.Run(ctx, nil)
	want := `agent: hook "sh -c echo > ` + started + `; exec sleep 1000": stopped: the agent is shutting down`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v", err)
	}
}
