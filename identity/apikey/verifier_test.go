package apikey_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/apikey"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func newVerifier(t *testing.T, f *fakeCA, clk clock.Clock, logs *logBuf, opts ...apikey.Option) *apikey.Verifier {
	t.Helper()
	opts = append([]apikey.Option{apikey.WithAudience(resource), apikey.WithClock(clk), apikey.WithLogger(slog.New(slog.NewJSONHandler(logs, nil)))}, opts...)
	v, err := apikey.New(f.srv.URL, f.roots(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clk := clock.NewFake(now)
	f := newFakeCA(t)
	logs := &logBuf{}
	v := newVerifier(t, f, clk, logs, apikey.WithFailureLimit(100, 100))
	ctx := context.Background()
	good, e := newKey(t, "ci-bot", now.Add(time.Hour))
	other, oe := newKey(t, "elsewhere", now.Add(time.Hour))
	oe.Audience = "https://other.example.com/mcp"
	old, xe := newKey(t, "old", now.Add(30*time.Second))
	unknown, _ := newKey(t, "never", now.Add(time.Hour))

	if _, err := v.Verify(ctx, good); !errors.Is(err, apikey.ErrNoKeySet) || !strings.Contains(err.Error(), "the key set was not fetched from "+f.srv.URL+" yet") {
		t.Fatalf("before any fetch: %v", err)
	}
	f.publish(now, time.Minute, e, oe, xe)
	if err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	k, err := v.Verify(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != "ci-bot" || strings.Join(k.Roles, ",") != "reader" || k.Attributes["team"] != "a" || k.Audience != resource || !k.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("key %+v", k)
	}
	for _, tc := range []struct {
		key  string
		is   error
		want string
	}{
		{unknown, apikey.ErrUnknown, "apikey: unknown or revoked API key"},
		{other, apikey.ErrAudience, `apikey: key "elsewhere": API key for another audience: it is for https://other.example.com/mcp`},
		{"mcpca_ak_nope", apikey.ErrMalformed, "apikey: not an mcpca API key: 13 characters, want 58"},
	} {
		if _, err := v.Verify(ctx, tc.key); !errors.Is(err, tc.is) || err.Error() != tc.want {
			t.Errorf("Verify: %v, want %q", err, tc.want)
		}
	}
	clk.Advance(30 * time.Second)
	if _, err := v.Verify(ctx, old); !errors.Is(err, apikey.ErrExpired) || !strings.Contains(err.Error(), `key "old": API key expired at`) {
		t.Errorf("expired: %v", err)
	}
	clk.Advance(30 * time.Second)
	// Past next_update the set is stale and every key is refused (fail
	// closed), without spending the callers' failure budgets.
	for i := 0; i < 200; i++ {
		if _, err := v.Verify(ctx, good); !errors.Is(err, apikey.ErrNoKeySet) || !strings.Contains(err.Error(), "is stale since") {
			t.Fatalf("stale set: %v", err)
		}
	}
	f.publish(clk.Now(), time.Minute, e)
	if err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, good); err != nil {
		t.Fatalf("after a fresh set: %v", err)
	}
	if strings.Contains(logs.String(), good[9:]) || strings.Contains(logs.String(), unknown[9:]) {
		t.Fatal("a key reached the log")
	}
	if !strings.Contains(logs.String(), `"msg":"API key refused"`) {
		t.Fatalf("no refusal logged: %s", logs)
	}
}

func TestRefreshRefusesBadSets(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clk := clock.NewFake(now)
	f := newFakeCA(t)
	v := newVerifier(t, f, clk, &logBuf{})
	ctx := context.Background()
	good, e := newKey(t, "ci-bot", now.Add(time.Hour))
	f.publish(now, time.Minute, e)
	if err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// An older set (a replay) is refused and the held one kept.
	f.publish(now.Add(-time.Second), time.Minute)
	if err := v.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "is older than the one held") {
		t.Fatalf("older set: %v", err)
	}
	if _, err := v.Verify(ctx, good); err != nil {
		t.Fatalf("after a refused refresh: %v", err)
	}
	// Signed by another key (kid unknown to the JWKS), another issuer, stale.
	other := newFakeCA(t)
	other.set.Issuer = f.srv.URL
	other.kid = "k2"
	other.publish(now, time.Minute)
	jws, err := apikey.SignSet(&other.set, other.key, "k2")
	if err != nil {
		t.Fatal(err)
	}
	forged, err := apikey.SignSet(&other.set, other.key, "k1")
	if err != nil {
		t.Fatal(err)
	}
	wrongIss := f.set
	wrongIss.Issuer = "https://evil.example"
	wi, _ := apikey.SignSet(&wrongIss, f.key, "k1")
	staleSet := f.set
	staleSet.IssuedAt, staleSet.NextUpdate = now.Add(-2*time.Minute).Unix(), now.Add(-time.Minute).Unix()
	st, _ := apikey.SignSet(&staleSet, f.key, "k1")
	for _, tc := range []struct{ jws, want string }{
		{jws, `apikey: key set is signed with key "k2", which the CA's JWKS does not hold`},
		{forged, `apikey: key set signature does not verify with key "k1"`},
		{wi, `apikey: key set issuer "https://evil.example" is not "` + f.srv.URL + `"`},
		{"not a jws", "apikey: key set is not a compact ES256 JWS"},
		{st, "apikey: key set from " + f.srv.URL + " issued at"},
	} {
		f.mu.Lock()
		f.jws = tc.jws
		f.mu.Unlock()
		if err := v.Refresh(ctx); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Refresh: %v, want %q", err, tc.want)
		}
	}
}

func TestFailedAttemptsLimitedPerSource(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clk := clock.NewFake(now)
	f := newFakeCA(t)
	logs := &logBuf{}
	v := newVerifier(t, f, clk, logs, apikey.WithFailureLimit(1, 2))
	good, e := newKey(t, "ci-bot", now.Add(time.Hour))
	f.publish(now, time.Hour, e)
	if err := v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad, _ := newKey(t, "x", now.Add(time.Hour))
	attacker := apikey.WithSource(context.Background(), "192.0.2.7")
	for i := 0; i < 2; i++ {
		if _, err := v.Verify(attacker, bad); !errors.Is(err, apikey.ErrUnknown) {
			t.Fatal(err)
		}
	}
	// Its budget is spent: even a good key is refused unread.
	if _, err := v.Verify(attacker, good); !errors.Is(err, apikey.ErrRateLimited) || err.Error() != "apikey: too many failed API key attempts from 192.0.2.7: try again later" {
		t.Fatalf("limited: %v", err)
	}
	// Another source is not.
	if _, err := v.Verify(apikey.WithSource(context.Background(), "192.0.2.8"), good); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if _, err := v.Verify(attacker, good); err != nil {
		t.Fatalf("after the budget refilled: %v", err)
	}
	// Through an HTTP request: the bearer header, the remote address.
	r := httptest.NewRequest("GET", "https://mcp.example.com/mcp", nil)
	r.RemoteAddr = "192.0.2.9:4000"
	r.Header.Set("Authorization", "Bearer "+good)
	if k, err := v.VerifyRequest(r); err != nil || k.Name != "ci-bot" {
		t.Fatalf("VerifyRequest: %v", err)
	}
	r.Header.Set("Authorization", "Basic eDp5")
	if _, err := v.VerifyRequest(r); !errors.Is(err, apikey.ErrMalformed) {
		t.Fatalf("no bearer: %v", err)
	}
	if !strings.Contains(logs.String(), `"source":"192.0.2.7"`) || strings.Contains(logs.String(), bad[9:]) {
		t.Fatalf("log: %s", logs)
	}
}

// TestRevocationWithinRefreshInterval: Run refreshes every interval, so a
// key revoked at the CA is refused after at most one interval.
func TestRevocationWithinRefreshInterval(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clk := clock.NewFake(now)
	f := newFakeCA(t)
	refreshed := make(chan error, 16)
	v := newVerifier(t, f, clk, &logBuf{}, apikey.WithRefreshInterval(15*time.Second), apikey.WithOnRefresh(func(err error) { refreshed <- err }))
	good, e := newKey(t, "ci-bot", now.Add(time.Hour))
	f.publish(now, time.Minute, e)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	armed := clk.Changed()
	go func() { done <- v.Run(ctx) }()
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	<-armed // Run armed its timer
	if _, err := v.Verify(ctx, good); err != nil {
		t.Fatal(err)
	}
	// Revoked at the CA: the next set lacks the key.
	clk.Advance(time.Second)
	f.publish(clk.Now(), time.Minute)
	if _, err := v.Verify(ctx, good); err != nil {
		t.Fatalf("still accepted within the interval, as stated: %v", err)
	}
	clk.Advance(14 * time.Second)
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, good); !errors.Is(err, apikey.ErrUnknown) {
		t.Fatalf("one interval after the revocation: %v", err)
	}
	cancel()
	<-done
}
