package ca

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpca/mcpca/clock"
)

// DefaultMaxInFlight bounds the CA's requests that may write (POST /sign,
// /renew, /rekey, /revoke) in flight at once. Issuance is CPU bound (a
// token and a CSR signature to verify, a certificate to sign: about 1 ms of
// one core) and its writes share one group commit, so a few dozen requests
// at once keep every core and the store busy; more would only queue, each
// answer later than the one before, while clients time out and retry. The
// excess is shed at once with 503 and Retry-After instead.
const DefaultMaxInFlight = 64

// admission is the CA's admission control: at most max writing requests in
// flight; beyond it, 503 at once with a Retry-After that grows with the
// excess, so a fleet that comes back together spreads itself over the
// time the CA needs to serve it.
type admission struct {
	max      int64 // 0: no bound
	inFlight atomic.Int64
	clk      clock.Clock

	mu       sync.Mutex
	window   time.Time // start of the current one-second window
	served   int64     // admitted in the current window
	shed     int64     // refused in the current window
	lastRate float64   // served per second in the previous window
	lastShed int64     // refused in the previous window
}

func newAdmission(max int, clk clock.Clock) *admission {
	return &admission{max: int64(max), clk: clk}
}

// admit takes a slot, or reports how long the caller should wait before
// trying again. release must be called once for every admitted request.
func (a *admission) admit() (retryAfter time.Duration, ok bool) {
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

func (a *admission) release() {
	if a.max > 0 {
		a.inFlight.Add(-1)
	}
}

// count records an admission or a refusal in the one-second windows and,
// for a refusal, returns the wait to advise: the time the CA needs, at the
// rate it served in the last second, to serve what it refused in the last
// and the current second, at least a second and at most a minute.
func (a *admission) count(admitted bool) time.Duration {
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
	rate := max(a.lastRate, float64(a.served), float64(a.max))
	secs := float64(a.lastShed+a.shed) / rate
	return time.Duration(min(max(math.Ceil(secs), 1), 60)) * time.Second
}

// refuseBusy answers a request the CA sheds.
func refuseBusy(w http.ResponseWriter, retryAfter time.Duration, max int64) {
	secs := int(retryAfter / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusServiceUnavailable, errorf("the CA is at its limit of %d requests in flight (serve --max-in-flight): retry after %d s", max, secs))
}
