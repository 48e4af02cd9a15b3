//go:build !unix

package agent

import (
	"os/exec"
	"syscall"
)

func killGroup(*exec.Cmd) {}

func sendSignal(int, syscall.Signal) error {
	return errorf("signal hooks are not supported on this system")
}

// ParseSignal reads a signal name; signals are not supported on this system.
func ParseSignal(name string) (syscall.Signal, error) {
	return 0, errorf("signal hooks are not supported on this system")
}
