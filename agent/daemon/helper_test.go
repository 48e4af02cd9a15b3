package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpca/mcpca/agent"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// armedRecorder collects the times sources arm their renewal timers, so
// tests wait for the loop instead of sleeping.
type armedRecorder chan time.Time

func newArmed() armedRecorder { return make(armedRecorder, 1000) }

func (a armedRecorder) option() agent.Option {
	return agent.WithOnSchedule(func(at time.Time) { a <- at })
}

func (a armedRecorder) next(tb testing.TB) time.Time {
	tb.Helper()
	select {
	case at := <-a:
		return at
	case <-time.After(30 * time.Second):
		tb.Fatal("the source did not arm its timer")
		return time.Time{}
	}
}

func (a armedRecorder) none(tb testing.TB) {
	tb.Helper()
	select {
	case at := <-a:
		tb.Fatalf("unexpected attempt, next armed for %v", at)
	default:
	}
}

// countingRenewer counts calls and can be switched down.
type countingRenewer struct {
	next  agent.Renewer
	calls atomic.Int64
	down  atomic.Bool
}

func (c *countingRenewer) Renew(ctx context.Context, cur tls.Certificate) (tls.Certificate, error) {
	c.calls.Add(1)
	if c.down.Load() {
		return tls.Certificate{}, errors.New("agent: renew: connection refused")
	}
	return c.next.Renew(ctx, cur)
}

// runSource starts s.Run and stops it when the test ends.
func runSource(t *testing.T, s *agent.Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
