package agent

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestRenewalTime(t *testing.T) {
	nb := t0
	na := t0.Add(24 * time.Hour)
	tests := []struct {
		name             string
		notBefore, after time.Time
		fraction, jitter float64
		want             time.Time
	}{
		{"two thirds", nb, na, 2.0 / 3.0, 0, t0.Add(16 * time.Hour)},
		{"half", nb, na, 0.5, 0, t0.Add(12 * time.Hour)},
		{"jitter brings it forward", nb, na, 0.5, 0.25, t0.Add(6 * time.Hour)},
		{"jitter never before notBefore", nb, na, 0.1, 0.5, t0},
		{"zero lifetime", nb, nb, 0.5, 0, t0},
		{"inverted validity", na, nb, 0.5, 0, na},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renewalTime(tt.notBefore, tt.after, tt.fraction, tt.jitter); !got.Equal(tt.want) {
				t.Fatalf("renewalTime = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		streak   int
		min, max time.Duration
		want     time.Duration
	}{
		{0, time.Second, time.Minute, 0},
		{1, time.Second, time.Minute, time.Second},
		{2, time.Second, time.Minute, 2 * time.Second},
		{6, time.Second, time.Minute, 32 * time.Second},
		{7, time.Second, time.Minute, time.Minute},
		{1000, time.Second, time.Minute, time.Minute},
		{1 << 30, time.Second, 5 * time.Minute, 5 * time.Minute},
		{3, 0, time.Minute, 4 * time.Second},                   // min defaults to 1s
		{3, time.Second, 0, time.Second},                       // max below min: min
		{2, 3 * time.Second, 5 * time.Second, 5 * time.Second}, // capped between doublings
	}
	for _, tt := range tests {
		if got := backoff(tt.streak, tt.min, tt.max); got != tt.want {
			t.Errorf("backoff(%d, %v, %v) = %v, want %v", tt.streak, tt.min, tt.max, got, tt.want)
		}
	}
}

func TestBackoffCap(t *testing.T) {
	tests := []struct {
		life, min, max, want time.Duration
	}{
		{24 * time.Hour, time.Second, 5 * time.Minute, 5 * time.Minute},
		{5 * time.Minute, time.Second, 5 * time.Minute, 15 * time.Second},
		{10 * time.Second, time.Second, 5 * time.Minute, time.Second},
	}
	for _, tt := range tests {
		if got := backoffCap(tt.life, tt.min, tt.max); got != tt.want {
			t.Errorf("backoffCap(%v, %v, %v) = %v, want %v", tt.life, tt.min, tt.max, got, tt.want)
		}
	}
}

func TestNextAttempt(t *testing.T) {
	due := t0.Add(time.Hour)
	tests := []struct {
		name   string
		now    time.Time
		streak int
		spread float64
		want   time.Time
	}{
		{"spread shortens a retry", due, 3, 0.25, due.Add(3 * time.Second)},
		{"spread never brings a retry before due", due.Add(-time.Second), 1, 0.5, due},
		{"before due waits for due", t0, 0, 0, due},
		{"before due even after failures", t0, 3, 0, due},
		{"due now: immediately", due, 0, 0, due},
		{"overdue: immediately", due.Add(time.Minute), 0, 0.5, due.Add(time.Minute)},
		{"first retry", due, 1, 0, due.Add(time.Second)},
		{"third retry", due, 3, 0, due.Add(4 * time.Second)},
		{"capped", due, 50, 0, due.Add(time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextAttempt(due, tt.now, tt.streak, time.Second, time.Minute, tt.spread); !got.Equal(tt.want) {
				t.Fatalf("nextAttempt = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHealthy(t *testing.T) {
	na := t0.Add(time.Hour)
	tests := []struct {
		name       string
		now        time.Time
		failures   int
		threshold  int
		ok         bool
		wantReason string
	}{
		{"fresh", t0, 0, 3, true, ""},
		{"some failures", t0, 2, 3, true, ""},
		{"too many failures", t0, 3, 3, false, "renewal failed 3 times in a row"},
		{"threshold off", t0, 300, 0, true, ""},
		{"expired", na, 0, 3, false, "certificate expired at 2026-03-01T13:00:00Z"},
		{"no certificate", t0, 0, 3, false, "no certificate yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			notAfter := na
			if tt.name == "no certificate" {
				notAfter = time.Time{}
			}
			ok, reason := healthy(notAfter, tt.now, tt.failures, tt.threshold)
			if ok != tt.ok || reason != tt.wantReason {
				t.Fatalf("healthy = %v %q, want %v %q", ok, reason, tt.ok, tt.wantReason)
			}
		})
	}
}

func TestProgressed(t *testing.T) {
	old := &x509.Certificate{NotAfter: t0.Add(time.Hour)}
	tests := []struct {
		name     string
		notAfter time.Time
		due, now time.Time
		want     bool
	}{
		{"longer and not due", t0.Add(2 * time.Hour), t0.Add(90 * time.Minute), t0.Add(30 * time.Minute), true},
		{"same end", t0.Add(time.Hour), t0.Add(45 * time.Minute), t0.Add(30 * time.Minute), false},
		{"shorter", t0.Add(50 * time.Minute), t0.Add(40 * time.Minute), t0.Add(30 * time.Minute), false},
		{"already due", t0.Add(2 * time.Hour), t0.Add(30 * time.Minute), t0.Add(30 * time.Minute), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := progressed(old, &x509.Certificate{NotAfter: tt.notAfter}, tt.due, tt.now); got != tt.want {
				t.Fatalf("progressed = %v", got)
			}
		})
	}
}
