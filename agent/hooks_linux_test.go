//go:build linux

package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCommandHookTimeoutKillsTheCommandAndItsChildren(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	// The shell starts a child that would outlive it, and waits.
	argv := []string{"sh", "-c", "sleep 1000 & echo $! > " + pidFile + "; wait"}
	c := &Command{Argv: argv, Timeout: 500 * time.Millisecond}
	err := c.Run(context.Background(), nil)
	want := `agent: hook "` + strings.Join(argv, " ") + `": timed out after 500ms and was killed`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	// The child must be gone: wait for its exit through a pidfd (it is not
	// our child, so it cannot be waited for), bounded well below its
	// 1000s sleep.
	b, err := os.ReadFile(pidFile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || perr != nil {
		// On a very busy machine the shell can be killed before it
		// reports its child; then there is no child to look for.
		t.Logf("the shell did not report its child (%v, %v)", err, perr)
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return // already gone and reaped
	}
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer unix.Close(fd)
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 20_000)
	if err != nil || n != 1 {
		t.Fatalf("the child %d outlived the timed-out hook (poll: %d, %v)", pid, n, err)
	}
}
