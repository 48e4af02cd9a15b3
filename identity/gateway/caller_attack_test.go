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
