package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestFailuresSpendAndRefill(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	f := New(1, 2)
	if f.Limited("a", now) {
		t.Fatal("a source with no failure is limited")
	}
	if !f.Fail("a", now) || !f.Fail("a", now) {
		t.Fatal("the burst was refused")
	}
	if !f.Limited("a", now) || f.Fail("a", now) {
		t.Fatal("past the burst, not limited")
	}
	if f.Limited("b", now) {
		t.Fatal("one source's failures limit another")
	}
	if f.Limited("a", now.Add(2*time.Second)) {
		t.Fatal("the budget did not refill")
	}
}

func TestFailuresBoundTheSourcesTracked(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	f := New(1, 1)
	f.max = 4
	for i := 0; i < 10; i++ {
		f.Fail(fmt.Sprint(i), now)
		if len(f.sources) > f.max {
			t.Fatalf("%d sources tracked, the bound is %d", len(f.sources), f.max)
		}
	}
	// At the bound, sources whose budget refilled are forgotten first.
	f = New(1, 1)
	f.max = 4
	for i := 0; i < 4; i++ {
		f.Fail(fmt.Sprint(i), now)
	}
	f.Fail("x", now.Add(time.Minute))
	if len(f.sources) != 1 {
		t.Fatalf("after refill, %d sources kept", len(f.sources))
	}
}
