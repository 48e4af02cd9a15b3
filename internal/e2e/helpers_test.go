package e2e_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/internal/agenttest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

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

// armedRecorder collects the times a source arms its renewal timer.
type armedRecorder struct{ agenttest.Armed }

func newArmed() armedRecorder { return armedRecorder{agenttest.NewArmed()} }

func (a armedRecorder) option() agent.Option { return agent.WithOnSchedule(a.Record) }

func (a armedRecorder) next(tb testing.TB) time.Time { tb.Helper(); return a.Next(tb) }

func (a armedRecorder) none(tb testing.TB) { tb.Helper(); a.None(tb) }
