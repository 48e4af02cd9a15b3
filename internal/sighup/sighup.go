// Package sighup is the one reload-on-signal helper of the commands
// (`mcpca serve`, `mcpca agent`, mcpca-example): SIGHUP asks for a reload,
// and the requests are coalesced so that a burst of signals while a reload
// runs yields one more reload, never a queue.
package sighup

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Notify returns a channel that receives a value after SIGHUP, until ctx
// ends. At most one request waits: signals that arrive while one is
// pending add nothing.
func Notify(ctx context.Context) <-chan struct{} {
	return notify(ctx, syscall.SIGHUP)
}

func notify(ctx context.Context, sig os.Signal) <-chan struct{} {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, sig)
	out := make(chan struct{}, 1)
	go func() {
		defer signal.Stop(sigs)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sigs:
				select {
				case out <- struct{}{}:
				default: // one is pending already
				}
			}
		}
	}()
	return out
}
