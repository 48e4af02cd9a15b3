package agent

import (
	"testing"
	"time"

	"github.com/mcpca/mcpca/agent/internal/agenttest"
)

type testCA = agenttest.CA

var (
	t0       = agenttest.T0
	tlsCert  = agenttest.TLSCert
	pemCerts = agenttest.PEMCerts
)

func newTestCA(tb testing.TB) *testCA { return agenttest.NewCA(tb) }

// renewerOf returns a Renewer issuing from ca for lifetime from now() on.
func renewerOf(ca *testCA, now func() time.Time, lifetime time.Duration) RenewerFunc {
	return RenewerFunc(ca.Renewer(now, lifetime))
}

// armedRecorder collects the times a source arms its renewal timer, so tests
// wait for the loop instead of sleeping.
type armedRecorder chan time.Time

func newArmed() armedRecorder { return make(armedRecorder, 1000) }

func (a armedRecorder) option() Option { return WithOnSchedule(func(at time.Time) { a <- at }) }

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
