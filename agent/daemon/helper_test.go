package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/internal/agenttest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// armedRecorder collects the times sources arm their renewal timers.
type armedRecorder struct{ agenttest.Armed }

func newArmed() armedRecorder { return armedRecorder{agenttest.NewArmed()} }

func (a armedRecorder) option() agent.Option { return agent.WithOnSchedule(a.Record) }

func (a armedRecorder) next(tb testing.TB) time.Time { tb.Helper(); return a.Next(tb) }

func (a armedRecorder) none(tb testing.TB) { tb.Helper(); a.None(tb) }

// countingRenewer counts calls and can be switched down.
type countingRenewer = agenttest.CountingRenewer

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
