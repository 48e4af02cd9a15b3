package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// An assertion without a jti, signed by an accepted gateway, is refused
// where a replay cache is in use: it could be replayed without the cache
// telling.
func TestVerifyCallerRefusesNoJTIWithReplayCache(t *testing.T) {
	s := NewBenchSetup(t, `@id("all") permit (principal, action, resource);`, nil)
	gwCert := s.CA.CreateSVID("spiffe://acme.test/server/gateway")
	as, err := newAssertionSigner(&gwCert.TLS)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	self := as.self
	c := Caller{Gateway: self, ID: s.Caller.Identity().ID.String(), Audience: "http://127.0.0.1:3001/mcp",
		IssuedAt: now.Unix(), Expiry: now.Add(DefaultCallerAssertTTL).Unix(), Method: http.MethodPost, BodyHash: bodyHash(body)}
	payload, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	a, err := as.sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(opts ...VerifyOption) error {
		r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(string(body)))
		r.Header.Set(CallerHeader, a)
		_, err := VerifyCaller(r, s.Verifier, append([]VerifyOption{WithGateways(self), WithAudience("http://127.0.0.1:3001/mcp")}, opts...)...)
		return err
	}
	if err := verify(); err != nil {
		t.Fatalf("without a replay cache: %v", err)
	}
	err = verify(WithReplayCache(NewReplayCache(0)))
	if want := "gateway: caller assertion: no jti: a replay cache cannot tell it from a replay"; err == nil || err.Error() != want {
		t.Fatalf("with a replay cache: %v, want %s", err, want)
	}
}

// The replay cache drops expired assertions earliest first, refuses a
// live jti again, and, full of live ones, refuses a new one without
// forgetting any; its heap never holds more than the cache does.
func TestReplayCacheForgetsEarliestFirst(t *testing.T) {
	rc := NewReplayCache(3)
	t0 := time.Unix(1_000_000, 0)
	for i, jti := range []string{"a", "b", "c"} {
		if err := rc.first(jti, t0, t0.Add(time.Duration(i+1)*time.Second)); err != nil {
			t.Fatalf("%s: %v", jti, err)
		}
	}
	want := func(err error, msg string) {
		t.Helper()
		if err == nil || err.Error() != msg {
			t.Fatalf("got %v, want %q", err, msg)
		}
	}
	want(rc.first("d", t0, t0.Add(time.Minute)), "gateway: caller assertion refused: the replay cache is full (3 assertions, none expired yet)")
	want(rc.first("a", t0, t0.Add(time.Minute)), "gateway: caller assertion replayed: its jti was already used")
	// a expires at t0+1s: d takes its place, b and c are still held.
	if err := rc.first("d", t0.Add(time.Second), t0.Add(time.Minute)); err != nil {
		t.Fatalf("d after a expired: %v", err)
	}
	want(rc.first("b", t0.Add(time.Second), t0.Add(time.Minute)), "gateway: caller assertion replayed: its jti was already used")
	want(rc.first("e", t0.Add(time.Second), t0.Add(time.Minute)), "gateway: caller assertion refused: the replay cache is full (3 assertions, none expired yet)")
	// Past every expiry but d's: b and c are forgotten, a may come again.
	now := t0.Add(10 * time.Second)
	for _, jti := range []string{"a", "b"} {
		if err := rc.first(jti, now, now.Add(time.Second)); err != nil {
			t.Fatalf("%s after expiry: %v", jti, err)
		}
	}
	if len(rc.seen) != 3 || len(rc.order) != 3 {
		t.Fatalf("held %d, heap %d; want 3 and 3", len(rc.seen), len(rc.order))
	}
}
