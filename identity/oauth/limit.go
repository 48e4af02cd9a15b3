package oauth

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"
)

// Default failure budget of a source at a Resource: DefaultFailureBurst
// refused bearer credentials at once, then DefaultFailureRate a second.
const (
	DefaultFailureBurst = 10
	DefaultFailureRate  = 1.0
)

// WithFailureLimit sets the refused bearer credentials (tokens, API keys,
// opaque tokens) one source may present: burst at once, then perSecond a
// second (default DefaultFailureBurst, DefaultFailureRate). Past it, the
// source's credentials are refused without being looked at, good ones
// included, with a 429 Error (RetryAfter set) until its budget refills. A
// source is what WithSource names; Verify without one is not limited.
func WithFailureLimit(perSecond float64, burst int) Option {
	return optionFunc(func(cfg *config) { cfg.failRate, cfg.failBurst = perSecond, burst })
}

// limitLog is the state of logLimited.
type limitLog struct {
	lmu          sync.Mutex
	lastLimitLog time.Time
	unlogged     int
}

type sourceKey struct{}

// WithSource returns ctx naming the source of a request (its IP address),
// for Verify's failure limit and the log line of each refusal.
// identity/mcpauth's Guard sets it from the request's remote address.
func WithSource(ctx context.Context, source string) context.Context {
	return context.WithValue(ctx, sourceKey{}, source)
}

// SourceFrom returns the source WithSource put in ctx ("" when none), for
// a BearerVerifier that keeps its own per-source state.
func SourceFrom(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}

// limited answers a source past its failure budget.
func (r *Resource) limited(src string, now time.Time) error {
	if src == "" || !r.fails.Limited(src, now) {
		return nil
	}
	r.logLimited(src, now)
	wait := time.Second
	if r.cfg.failRate > 0 {
		wait = time.Duration(math.Ceil(1/r.cfg.failRate)) * time.Second
	}
	return &Error{Code: CodeInvalidRequest, RetryAfter: wait,
		Description: "too many refused bearer credentials from " + src + ": try again in " + wait.String()}
}

// logLimited logs a refusal of a rate-limited source, at most one line a
// second for the Resource (with how many were not logged), so that a flood
// cannot flood the log.
func (r *Resource) logLimited(src string, now time.Time) {
	r.lmu.Lock()
	defer r.lmu.Unlock()
	if !r.lastLimitLog.IsZero() && now.Sub(r.lastLimitLog) < time.Second {
		r.unlogged++
		return
	}
	r.cfg.logger.Warn("bearer credential refused unread: source rate-limited", "source", src, "not_logged_since_last", r.unlogged)
	r.lastLimitLog, r.unlogged = now, 0
}

// refused counts a refusal against the source's budget and logs it with
// the source and the reason, never the credential.
func (r *Resource) refused(src string, now time.Time, err error) {
	var oe *Error
	if errors.As(err, &oe) && oe.Code == CodeInsufficientScope {
		// A valid credential with too little scope: not a guess.
		r.cfg.logger.Info("bearer credential refused", "source", src, "reason", oe.Description, "status", oe.Status())
		return
	}
	reason := err.Error()
	if oe != nil {
		reason = oe.Description
	}
	if src == "" {
		r.cfg.logger.Warn("bearer credential refused", "reason", reason)
		return
	}
	if r.fails.Fail(src, now) {
		r.cfg.logger.Warn("bearer credential refused", "source", src, "reason", reason)
	} else {
		r.cfg.logger.Warn("bearer credential refused; source rate-limited", "source", src, "reason", reason)
	}
}
