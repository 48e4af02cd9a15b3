package agent

import (
	"crypto/x509"
	"strconv"
	"time"
)

// This file holds the decisions of the renewal loop as pure functions of the
// time and the certificate, so they can be tested with tables.

// renewalTime returns when a certificate valid from notBefore to notAfter is
// due for renewal: once fraction of its lifetime has passed, brought forward
// by jitter (a fraction of the lifetime, already sampled). The result never
// falls before notBefore.
func renewalTime(notBefore, notAfter time.Time, fraction, jitter float64) time.Time {
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return notBefore
	}
	f := fraction - jitter
	if f < 0 {
		f = 0
	}
	return notBefore.Add(time.Duration(float64(life) * f))
}

// backoff returns the wait before retry number streak (1 for the first
// retry): min doubled for each further failure, capped at max.
func backoff(streak int, min, max time.Duration) time.Duration {
	if streak <= 0 {
		return 0
	}
	if min <= 0 {
		min = time.Second
	}
	if max < min {
		max = min
	}
	d := min
	for i := 1; i < streak; i++ {
		if d >= max/2 {
			return max
		}
		d *= 2
	}
	if d > max {
		return max
	}
	return d
}

// backoffCap returns the largest wait between retries for a certificate of
// the given lifetime: max, but no more than a twentieth of the lifetime (so a
// five-minute certificate retries every 15s at worst), and never below min.
func backoffCap(lifetime, min, max time.Duration) time.Duration {
	c := max
	if l := lifetime / 20; l < c {
		c = l
	}
	if c < min {
		c = min
	}
	return c
}

// nextAttempt returns when to try to renew next. due is the renewal time of
// the current certificate; streak counts the consecutive attempts that did
// not move things forward (failures, and renewals that returned a
// certificate no longer-lived than the old one, which would otherwise renew
// in a loop).
//
// Before due nothing happens. Once due, the first attempt is immediate; after
// streak unproductive attempts the next one waits backoff(streak), shortened
// by spread (a fraction in [0, 1), sampled per attempt) so that many hosts
// retrying after one CA outage do not retry in step.
func nextAttempt(due, now time.Time, streak int, min, max time.Duration, spread float64) time.Time {
	at := now
	if streak > 0 {
		b := backoff(streak, min, max)
		at = now.Add(b - time.Duration(float64(b)*spread))
	}
	if due.After(at) {
		return due
	}
	return at
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// schedule is the renewal schedule of a source: when a certificate is due,
// and when to try next after failures. Source.delay and the storm
// simulation both use it.
type schedule struct {
	renewAt, jitter        float64 // WithRenewAt, WithJitter
	minBackoff, maxBackoff time.Duration
}

func (c *config) schedule() schedule {
	return schedule{renewAt: c.renewAt, jitter: c.jitter, minBackoff: c.minBackoff, maxBackoff: c.maxBackoff}
}

// lifetimeJitter is the jitter as a fraction of the lifetime: WithJitter's
// fraction of the time to the renew point.
func (c schedule) lifetimeJitter() float64 { return c.jitter * c.renewAt }

// due is the renewal time of a certificate valid from notBefore to
// notAfter, with u its jitter sample in [0, 1).
func (c schedule) due(notBefore, notAfter time.Time, u float64) time.Time {
	return renewalTime(notBefore, notAfter, c.renewAt, c.lifetimeJitter()*u)
}

// next returns when to attempt next at now: streak unproductive attempts
// so far, busy the Retry-After of the last one when the CA shed it (0 if
// not), rand the source of the retries' spread.
func (c schedule) next(notBefore, notAfter, now time.Time, u float64, streak int, busy time.Duration, rand func() float64) time.Time {
	due := c.due(notBefore, notAfter, u)
	if busy > 0 {
		// The CA shed the last attempt and said when to come back (its
		// wait grows with the excess it sheds): then, instead of the
		// backoff, spread over as long again, so a fleet it shed together
		// does not return together.
		return later(due, now.Add(busy+time.Duration(float64(busy)*rand())))
	}
	max := backoffCap(notAfter.Sub(notBefore), c.minBackoff, c.maxBackoff)
	// Retries are spread by up to four times the jitter as a fraction of
	// the lifetime (20% by default), at most half.
	spread := 0.0
	if streak > 0 {
		spread = min(4*c.lifetimeJitter(), 0.5) * rand()
	}
	return nextAttempt(due, now, streak, c.minBackoff, max, spread)
}

// healthy reports whether a certificate expiring at notAfter, whose renewal
// has failed failures times in a row, is fit to serve at now; threshold is the
// number of consecutive failures tolerated (0 means any number). When it is
// not, reason says why.
func healthy(notAfter, now time.Time, failures, threshold int) (ok bool, reason string) {
	if notAfter.IsZero() {
		return false, "no certificate yet"
	}
	if !now.Before(notAfter) {
		return false, "certificate expired at " + notAfter.UTC().Format(time.RFC3339)
	}
	if threshold > 0 && failures >= threshold {
		return false, "renewal failed " + strconv.Itoa(failures) + " times in a row"
	}
	return true, ""
}

// progressed reports whether a renewal that replaced old with renewed, whose
// renewal time is due, moved things forward: the new certificate lasts longer
// than the old one and is not already due at now. A renewal that did not is
// retried with backoff, as a failure is, so a CA that keeps returning short
// certificates cannot drive a renewal loop.
func progressed(old, renewed *x509.Certificate, due, now time.Time) bool {
	return renewed.NotAfter.After(old.NotAfter) && due.After(now)
}
