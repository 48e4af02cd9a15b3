package sighup

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// A real SIGHUP to this process reaches the channel; a burst while one is
// pending coalesces into one request; after ctx ends, nothing is delivered.
func TestNotify(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	reload := Notify(ctx)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reload:
	case <-time.After(time.Minute):
		t.Fatal("no reload after SIGHUP")
	}
	// Three signals while nobody reads: one pending request. The channel
	// has room for one, so wait until it holds it, then check no second
	// one follows once it is taken and no more signals come.
	for range 3 {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-reload:
	case <-time.After(time.Minute):
		t.Fatal("no reload after a burst")
	}
	if cap(reload) != 1 {
		t.Fatalf("the channel holds %d requests, want at most 1", cap(reload))
	}
	cancel()
}
