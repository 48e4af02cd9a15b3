package agenttest

import (
	"context"
	"crypto/tls"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// Armed collects the times a source arms its renewal timer (give it to
// agent.WithOnSchedule), so tests wait for the loop instead of sleeping.
type Armed chan time.Time

// NewArmed returns a recorder with room for 1000 events.
func NewArmed() Armed { return make(Armed, 1000) }

// Record is the agent.WithOnSchedule callback.
func (a Armed) Record(at time.Time) { a <- at }

// Next waits for the next time the timer is armed.
func (a Armed) Next(tb testing.TB) time.Time {
	tb.Helper()
	select {
	case at := <-a:
		return at
	case <-time.After(30 * time.Second):
		tb.Fatal("the source did not arm its timer")
		return time.Time{}
	}
}

// None fails if the timer was armed since the last Next.
func (a Armed) None(tb testing.TB) {
	tb.Helper()
	select {
	case at := <-a:
		tb.Fatalf("unexpected attempt, next armed for %v", at)
	default:
	}
}

// Renewer is agent.Renewer, restated to avoid an import cycle.
type Renewer interface {
	Renew(ctx context.Context, cur tls.Certificate) (tls.Certificate, error)
}

// CountingRenewer counts calls and can be switched down (a CA outage).
type CountingRenewer struct {
	Next  Renewer
	Calls atomic.Int64
	Down  atomic.Bool
}

// Renew counts the call and fails while Down is set.
func (c *CountingRenewer) Renew(ctx context.Context, cur tls.Certificate) (tls.Certificate, error) {
	c.Calls.Add(1)
	if c.Down.Load() {
		return tls.Certificate{}, errors.New("agent: renew: connection refused")
	}
	return c.Next.Renew(ctx, cur)
}
