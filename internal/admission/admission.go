// Package admission is the CA's admission control: at most a bound of
// requests in flight; beyond it a request is refused at once with the wait
// to advise (Retry-After), which grows with the excess, so a fleet that
// comes back together spreads itself over the time the CA needs to serve
// it. The CA uses it for its writing requests; the agent's storm simulation
// uses the same code as its model of the CA.
package admission

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpca/mcpca/clock"
)

// DefaultMax is the CA's default bound (ca.DefaultMaxInFlight, serve
// --max-in-flight). Issuance is CPU bound (a token and a CSR signature to
// verify, a certificate to sign: about 1 ms of one core) and its writes
// share one group commit, so a few dozen requests at once keep every core
// and the store busy; more would only queue, each answer later than the one
// before, while clients time out and retry.
const DefaultMax = 64

// Limiter bounds the requests in flight. Its zero value is not usable: call
// New.
type Limiter struct {
	max      int64 // 0: no bound
	inFlight atomic.Int64
	clk      clock.Clock

	mu       sync.Mutex
	window   time.Time // start of the current one-second window
	served   int64     // admitted in the current window
	shed     int64     // refused in the current window
	lastRate float64   // admitted per second in the previous window
	lastShed int64     // refused in the previous window
}

// New returns a limiter of max requests in flight (0: no bound) on clk.
func New(max int, clk clock.Clock) *Limiter {
	return &Limiter{max: int64(max), clk: clock.Or(clk)}
}

// Max is the bound (0: none).
func (a *Limiter) Max() int { return int(a.max) }

// InFlight is the number of admitted requests not yet released.
func (a *Limiter) InFlight() int { return int(a.inFlight.Load()) }

// Admit takes a slot, or refuses with the wait the caller should be told.
// Release must be called once for every admitted request.
func (a *Limiter) Admit() (retryAfter time.Duration, ok bool) {
	if a.max <= 0 {
		return 0, true
	}
	if a.inFlight.Add(1) > a.max {
		a.inFlight.Add(-1)
		return a.count(false), false
	}
	a.count(true)
	return 0, true
}

// Release frees the slot of an admitted request.
func (a *Limiter) Release() {
	if a.max > 0 {
		a.inFlight.Add(-1)
	}
}

// count records an admission or a refusal in one-second windows and, for a
// refusal, returns the wait to advise: the time the CA needs, at the rate
// it admitted in the last second (or so far in this one), to serve
// what it refused in the last and the current second; at least a second,
// at most a minute.
func (a *Limiter) count(admitted bool) time.Duration {
	now := a.clk.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if d := now.Sub(a.window); d >= time.Second || d < 0 {
		if d < 2*time.Second && d >= 0 {
			a.lastRate, a.lastShed = float64(a.served)/d.Seconds(), a.shed
		} else {
			a.lastRate, a.lastShed = 0, 0
		}
		a.window, a.served, a.shed = now, 0, 0
	}
	if admitted {
		a.served++
		return 0
	}
	a.shed++
	rate := max(a.lastRate, float64(a.served), 1)
	secs := float64(a.lastShed+a.shed) / rate
	return time.Duration(min(max(math.Ceil(secs), 1), 60)) * time.Second
}
