package admission

import (
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
)

// The advised wait covers the time the CA needs, at the rate it served in
// the last second, to serve what it shed; at least 1 s, at most 60 s.
func TestAdmissionRetryAfterGrowsWithTheExcess(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	a := New(10, clk)
	var held int
	take := func() (time.Duration, bool) {
		d, ok := a.Admit()
		if ok {
			held++
		}
		return d, ok
	}
	for range 10 {
		if _, ok := take(); !ok {
			t.Fatal("refused within the bound")
		}
	}
	if d, ok := take(); ok || d != time.Second {
		t.Fatalf("11th request: admitted %v, retry after %v; want refused, 1s", ok, d)
	}
	// Next second: the ten still in flight; 300 more are shed: at 10/s
	// served, 30 s.
	clk.Advance(time.Second)
	var last time.Duration
	for range 300 {
		d, ok := take()
		if ok {
			t.Fatal("admitted beyond the bound")
		}
		last = d
	}
	if last != 31*time.Second {
		t.Fatalf("after 301 shed at 10/s: retry after %v, want 31s", last)
	}
	for range 2000 {
		last, _ = take()
	}
	if last != time.Minute {
		t.Fatalf("retry after %v, want the cap of 1m", last)
	}
	// Released slots are admitted again.
	for range held {
		a.Release()
	}
	if _, ok := take(); !ok {
		t.Fatal("refused after the requests in flight ended")
	}
	// No bound: everything admitted.
	u := New(0, clk)
	for range 1000 {
		if _, ok := u.Admit(); !ok {
			t.Fatal("refused without a bound")
		}
	}
}
