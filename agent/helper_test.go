package agent

import (
	"testing"
	"time"

	"github.com/mcpca/mcpca/internal/agenttest"
)

type testCA = agenttest.CA

var (
	t0      = agenttest.T0
	tlsCert = agenttest.TLSCert
)

func newTestCA(tb testing.TB) *testCA { return agenttest.NewCA(tb) }

// renewerOf returns a Renewer issuing from ca for lifetime from now() on.
func renewerOf(ca *testCA, now func() time.Time, lifetime time.Duration) RenewerFunc {
	return RenewerFunc(ca.Renewer(now, lifetime))
}

// armedRecorder collects the times a source arms its renewal timer.
type armedRecorder struct{ agenttest.Armed }

func newArmed() armedRecorder { return armedRecorder{agenttest.NewArmed()} }

func (a armedRecorder) option() Option { return WithOnSchedule(a.Record) }

func (a armedRecorder) next(tb testing.TB) time.Time { tb.Helper(); return a.Next(tb) }

func (a armedRecorder) none(tb testing.TB) { tb.Helper(); a.None(tb) }
