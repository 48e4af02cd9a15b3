//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package gateway

import (
	"net"
	"syscall"
)

// alive reports whether an idle connection is still open and quiet: a
// peek that does not wait (one recvfrom) finds neither its end nor bytes
// the upstream sent unasked.
func alive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && open
}
