package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultHookTimeout bounds a Command hook that sets no Timeout.
const DefaultHookTimeout = 30 * time.Second

// Hook is an action run after every renewal (and every change of the trust
// bundle), to make a consumer reload its certificate: run a command, signal
// a process.
type Hook interface {
	Run(ctx context.Context, s *Snapshot) error
}

// Command runs a program after a renewal: argv directly, no shell, so
// nothing in it is interpreted. It is killed, with every process it started,
// when Timeout passes.
type Command struct {
	Argv    []string
	Timeout time.Duration // DefaultHookTimeout if 0
	Env     []string      // added to the agent's environment
}

// Run runs the command and waits for it.
func (c *Command) Run(ctx context.Context, _ *Snapshot) error {
	if len(c.Argv) == 0 {
		return errorf("hook: no command")
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Env = append(os.Environ(), c.Env...)
	out := &tail{max: 512}
	cmd.Stdout, cmd.Stderr = out, out
	killGroup(cmd)
	// If a process the command left behind keeps its output open, stop
	// waiting for it this long after the kill.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case errors.Is(ctx.Err(), context.Canceled):
		return errorf("hook %q: stopped: the agent is shutting down", strings.Join(c.Argv, " "))
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return errorf("hook %q: timed out after %v and was killed", strings.Join(c.Argv, " "), timeout)
	case out.String() != "":
		return errorf("hook %q: %v: %s", strings.Join(c.Argv, " "), err, out.String())
	default:
		return errorf("hook %q: %v", strings.Join(c.Argv, " "), err)
	}
}

// Signal sends a signal to a process after a renewal: PID, or the process id
// read from PIDFile at the time of the renewal (so a restarted consumer is
// still found).
type Signal struct {
	PID     int
	PIDFile string
	Signal  syscall.Signal // SIGHUP if 0 (see ParseSignal)
}

// Run sends the signal.
func (s *Signal) Run(context.Context, *Snapshot) error {
	sig := s.Signal
	if sig == 0 {
		sig = syscall.Signal(1) // SIGHUP
	}
	pid := s.PID
	if s.PIDFile != "" {
		b, err := os.ReadFile(s.PIDFile)
		if err != nil {
			return errorf("signal hook: reading pid file: %v", err)
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			return errorf("signal hook: pid file %s does not hold a process id", s.PIDFile)
		}
	}
	if pid <= 0 {
		return errorf("signal hook: no process id")
	}
	if err := sendSignal(pid, sig); err != nil {
		return errorf("signal hook: sending %v to process %d: %v", sig, pid, err)
	}
	return nil
}

// Hooks runs hooks after every renewal. Each hook runs once per new
// snapshot (a renewal, or a new trust bundle from the CA), in order; a failing hook is logged and counted, and the next
// hooks still run. A failure never triggers a renewal: the hook simply runs
// again after the next one.
type Hooks struct {
	hooks    []Hook
	logger   *slog.Logger
	runs     atomic.Uint64
	failures atomic.Uint64
}

// NewHooks returns a runner for hooks, logging to logger (slog.Default()
// if nil).
func NewHooks(logger *slog.Logger, hooks ...Hook) *Hooks {
	if logger == nil {
		logger = slog.Default()
	}
	return &Hooks{hooks: hooks, logger: logger}
}

// Notify runs the hooks for s; pass it to Source.Subscribe.
func (h *Hooks) Notify(s *Snapshot) { h.Run(context.Background(), s) }

// Run runs the hooks for s; cancelling ctx (at shutdown) kills a running
// command instead of waiting for its timeout.
func (h *Hooks) Run(ctx context.Context, s *Snapshot) {
	for _, hook := range h.hooks {
		if ctx.Err() != nil {
			return
		}
		h.runs.Add(1)
		if err := hook.Run(ctx, s); err != nil {
			h.failures.Add(1)
			h.logger.Error("agent: reload hook failed; it will run again after the next renewal", "error", err.Error())
		}
	}
}

// Runs returns how many hook runs were started.
func (h *Hooks) Runs() uint64 { return h.runs.Load() }

// Failures returns how many hook runs failed.
func (h *Hooks) Failures() uint64 { return h.failures.Load() }

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string { return strings.TrimSpace(string(t.b)) }
