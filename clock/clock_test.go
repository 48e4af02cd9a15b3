package clock

import (
	"testing"
	"time"
)

func TestFakeTimersFireInOrderOnAdvance(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(time.Second)
	f.Advance(1500 * time.Millisecond)
	select {
	case got := <-b.C():
		if !got.Equal(start.Add(1500 * time.Millisecond)) {
			t.Fatalf("b fired at %v", got)
		}
	default:
		t.Fatal("b did not fire")
	}
	select {
	case <-a.C():
		t.Fatal("a fired early")
	default:
	}
	if a.Stop() != true || f.Pending() != 0 {
		t.Fatalf("stop: pending=%d", f.Pending())
	}
	a.Reset(time.Second)
	f.Advance(time.Second)
	select {
	case <-a.C():
	default:
		t.Fatal("reset timer did not fire")
	}
}

func TestFakeStopAndResetDiscardStaleTicks(t *testing.T) {
	f := NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	tm := f.NewTimer(time.Second)
	f.Advance(time.Second) // fired, tick buffered, not received
	tm.Reset(time.Minute)
	select {
	case <-tm.C():
		t.Fatal("a stale tick survived Reset")
	default:
	}
	f.Advance(time.Minute)
	tm.Stop()
	select {
	case <-tm.C():
		t.Fatal("a stale tick survived Stop")
	default:
	}
}
