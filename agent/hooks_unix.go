//go:build unix

package agent

import (
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// killGroup runs cmd in its own process group and makes a cancellation kill
// the whole group, so a timed-out hook leaves no process behind.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

func sendSignal(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }

// ParseSignal reads a signal name: "HUP", "SIGHUP", "usr1", or a number.
func ParseSignal(name string) (syscall.Signal, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	n = strings.TrimPrefix(n, "SIG")
	if v, err := strconv.Atoi(n); err == nil && v > 0 && v < 65 {
		return syscall.Signal(v), nil
	}
	switch n {
	case "HUP":
		return syscall.SIGHUP, nil
	case "INT":
		return syscall.SIGINT, nil
	case "QUIT":
		return syscall.SIGQUIT, nil
	case "TERM":
		return syscall.SIGTERM, nil
	case "USR1":
		return syscall.SIGUSR1, nil
	case "USR2":
		return syscall.SIGUSR2, nil
	case "KILL":
		return syscall.SIGKILL, nil
	}
	return 0, errorf("unknown signal %q", name)
}
