// Package ratelimit bounds failed attempts per source (an IP address): the
// CA's token endpoint and the API key verifier refuse a source whose
// failures used up its budget, until the budget refills.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxSources bounds the sources tracked at once.
const DefaultMaxSources = 16384

// Failures is a token bucket per source, spent by failures only: a source
// may fail Burst times at once and then PerSecond times a second. Safe for
// concurrent use.
type Failures struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	max     int
	sources map[string]*rate.Limiter
}

// New returns a limiter allowing burst failures at once and perSecond a
// second after that, per source.
func New(perSecond float64, burst int) *Failures {
	return &Failures{limit: rate.Limit(perSecond), burst: burst, max: DefaultMaxSources, sources: map[string]*rate.Limiter{}}
}

// Limited reports whether source has no failure left at now: its requests
// are refused without being looked at.
func (f *Failures) Limited(source string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.sources[source]
	return l != nil && l.TokensAt(now) < 1
}

// Fail records a failure of source at now and reports whether it was
// within the budget (false: the source is now limited).
func (f *Failures) Fail(source string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.sources[source]
	if l == nil {
		if len(f.sources) >= f.max {
			f.prune(now)
		}
		l = rate.NewLimiter(f.limit, f.burst)
		f.sources[source] = l
	}
	return l.AllowN(now, 1)
}

// prune forgets the sources whose budget is full again, and every source
// when that is not enough.
func (f *Failures) prune(now time.Time) {
	for s, l := range f.sources {
		if l.TokensAt(now) >= float64(f.burst) {
			delete(f.sources, s)
		}
	}
	if len(f.sources) >= f.max {
		clear(f.sources)
	}
}
