package agent

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/admission"
)

// The storm simulation: a fleet enrolled at the same moment comes due while
// the CA is down, and the CA comes back with a few minutes of the
// certificates' lives left. Virtual time, no goroutine per agent: each
// agent's next attempt is decided by the sources' own schedule (the code
// Source.delay runs: renew point, jitter, backoff, Retry-After), and the CA
// is modelled as one FIFO server of a fixed rate behind the CA's own
// admission.Limiter (the code serve runs), or behind none. A request that
// waits longer than the client timeout fails for the agent (which retries
// on its schedule) but still costs the CA its work, as in a real server.
type stormParams struct {
	agents      int
	lifetime    time.Duration // of every certificate
	rate        float64       // requests the CA serves per second
	maxInFlight int           // 0: no admission control
	timeout     time.Duration // the client's, as caclient's
	down, up    time.Duration // the outage, from enrolment
	seed        uint64
}

type stormResult struct {
	renewed, expired   int           // agents renewed after the outage; agents whose certificate expired first
	lastRenewal        time.Duration // after the CA came back
	peakOffered        int           // attempts reaching the CA in its busiest second
	peakServed         int           // certificates issued in its busiest second
	shed, timedOut     int           // 503s; requests the client gave up on
	wasted             int           // requests served after their client had gone
	maxWait, p99Wait   time.Duration // queueing of the answered requests
	peakInFlight       int
	attemptsWhileDown  int
	secondsToServeLoad float64 // agents / rate: the floor on the last renewal
}

type simEvent struct {
	at    time.Time
	kind  int // evAttempt, evDone, evTimeout
	agent int
	req   int // request number, for evDone/evTimeout
}

const (
	evAttempt = iota
	evDone
	evTimeout
)

type simQueue []simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].kind > q[j].kind // completions before attempts at one instant
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type simAgent struct {
	notBefore, notAfter time.Time
	u                   float64
	streak              int
	busy                time.Duration
	pending             int // the request in flight, 0 if none
	renewedAfterOutage  bool
}

func simulateStorm(p stormParams) stormResult {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(p.seed, 1))
	sched := schedule{renewAt: DefaultRenewAt, jitter: DefaultJitter, minBackoff: DefaultMinBackoff, maxBackoff: DefaultMaxBackoff}
	clk := clock.NewFake(t0)
	lim := admission.New(p.maxInFlight, clk)
	down, up := t0.Add(p.down), t0.Add(p.up)
	service := time.Duration(float64(time.Second) / p.rate)

	agents := make([]simAgent, p.agents)
	q := &simQueue{}
	for i := range agents {
		a := &agents[i]
		a.notBefore, a.notAfter, a.u = t0, t0.Add(p.lifetime), rng.Float64()
		heap.Push(q, simEvent{at: sched.next(a.notBefore, a.notAfter, t0, a.u, 0, 0, rng.Float64), kind: evAttempt, agent: i})
	}
	var res stormResult
	res.secondsToServeLoad = float64(p.agents) / p.rate
	offered := map[int64]int{}
	served := map[int64]int{}
	var waits []time.Duration
	serverFree := t0 // when the FIFO server is next idle
	reqs := 0
	inFlight := 0
	arrived := map[int]time.Time{}
	fail := func(a *simAgent, i int, now time.Time, busy time.Duration) {
		a.streak++
		a.busy = busy
		heap.Push(q, simEvent{at: sched.next(a.notBefore, a.notAfter, now, a.u, a.streak, a.busy, rng.Float64), kind: evAttempt, agent: i})
	}
	for q.Len() > 0 {
		e := heap.Pop(q).(simEvent)
		clk.Set(e.at)
		a := &agents[e.agent]
		switch e.kind {
		case evAttempt:
			if !e.at.Before(a.notAfter) {
				res.expired++ // the certificate expired before it renewed
				continue
			}
			if !e.at.Before(down) && e.at.Before(up) {
				res.attemptsWhileDown++
				fail(a, e.agent, e.at, 0) // connection refused
				continue
			}
			offered[e.at.Unix()]++
			wait, ok := lim.Admit()
			if !ok {
				res.shed++
				fail(a, e.agent, e.at, wait)
				continue
			}
			inFlight++
			res.peakInFlight = max(res.peakInFlight, inFlight)
			reqs++
			a.pending = reqs
			start := later(serverFree, e.at)
			serverFree = start.Add(service)
			arrived[reqs] = e.at
			heap.Push(q, simEvent{at: serverFree, kind: evDone, agent: e.agent, req: reqs})
			heap.Push(q, simEvent{at: e.at.Add(p.timeout), kind: evTimeout, agent: e.agent, req: reqs})
		case evTimeout:
			if a.pending != e.req {
				continue // answered in time
			}
			a.pending = 0
			res.timedOut++
			fail(a, e.agent, e.at, 0)
		case evDone:
			lim.Release()
			inFlight--
			served[e.at.Unix()]++
			wait := e.at.Sub(arrived[e.req])
			delete(arrived, e.req)
			if a.pending != e.req {
				res.wasted++ // the client gave up already
				continue
			}
			a.pending = 0
			waits = append(waits, wait)
			res.maxWait = max(res.maxWait, wait)
			a.notBefore, a.notAfter, a.u, a.streak, a.busy = e.at, e.at.Add(p.lifetime), rng.Float64(), 0, 0
			if !e.at.Before(up) && !a.renewedAfterOutage {
				a.renewedAfterOutage = true
				res.renewed++
				res.lastRenewal = max(res.lastRenewal, e.at.Sub(up))
				if res.renewed+res.expired == p.agents {
					q = &simQueue{} // everyone is through the storm
					continue
				}
			}
			heap.Push(q, simEvent{at: sched.next(a.notBefore, a.notAfter, e.at, a.u, 0, 0, rng.Float64), kind: evAttempt, agent: e.agent})
		}
	}
	for _, n := range offered {
		res.peakOffered = max(res.peakOffered, n)
	}
	for _, n := range served {
		res.peakServed = max(res.peakServed, n)
	}
	if len(waits) > 0 {
		slices.Sort(waits)
		res.p99Wait = waits[len(waits)*99/100]
	}
	return res
}

// stormAgents is the simulated fleet: 10,000 in make test,
// MCPCA_STORM_AGENTS (make storm: 100,000) otherwise.
func stormAgents(t *testing.T) int {
	if v := os.Getenv("MCPCA_STORM_AGENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MCPCA_STORM_AGENTS=%q: want a positive number", v)
		}
		return n
	}
	return 10_000
}

// A fleet of one-hour certificates, enrolled at one moment, comes due
// (around 40 minutes) while the CA is down from 35 to 50 minutes; the CA,
// serving a fixed rate, comes back with 10 minutes of their lives left.
// With admission control every agent renews before its certificate
// expires, no client times out, and the CA never holds more than its
// bound. Without it (reported, for comparison) the queue outgrows the
// client timeout and the CA spends its time on answers nobody waits for.
func TestStormSimulation(t *testing.T) {
	n := stormAgents(t)
	// The CA is sized at ten times the fleet's steady load (a renewal
	// every two thirds of an hour per agent): ample in normal operation,
	// too little for everyone at once.
	rate := 10 * float64(n) / (time.Hour.Seconds() * DefaultRenewAt)
	base := stormParams{agents: n, lifetime: time.Hour, rate: rate, timeout: 30 * time.Second,
		down: 35 * time.Minute, up: 50 * time.Minute, seed: 7}
	report := func(name string, r stormResult) {
		t.Logf("%-26s %d agents, CA %.0f/s: renewed %d, expired %d, last renewal %v after the CA came back (floor %.0fs); "+
			"peak offered %d/s, peak served %d/s, 503 %d, timed out %d, wasted %d, peak in flight %d, queue p99 %v max %v",
			name, n, rate, r.renewed, r.expired, r.lastRenewal.Round(time.Second), r.secondsToServeLoad,
			r.peakOffered, r.peakServed, r.shed, r.timedOut, r.wasted, r.peakInFlight, r.p99Wait.Round(time.Millisecond), r.maxWait.Round(time.Millisecond))
	}
	with := base
	with.maxInFlight = admission.DefaultMax
	r := simulateStorm(with)
	report(fmt.Sprintf("admission (%d in flight)", with.maxInFlight), r)
	if r.expired != 0 || r.renewed != n {
		t.Errorf("with admission control: %d of %d renewed, %d expired", r.renewed, n, r.expired)
	}
	if r.timedOut != 0 || r.peakInFlight > with.maxInFlight {
		t.Errorf("with admission control: %d timed out, %d in flight at the peak (bound %d)", r.timedOut, r.peakInFlight, with.maxInFlight)
	}
	if r.shed == 0 {
		t.Errorf("the storm was not one: nothing was shed")
	}
	report("no admission control", simulateStorm(base))
}
