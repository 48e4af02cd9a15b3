package apikey_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/apikey"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/policy"
)

// TestBearer: a Verifier as an oauth.BearerVerifier in a Resource: a key's
// principal (SPIFFE ID from its name, roles, attributes, api-key), built
// once per key set; the audience checked by the Resource against its own
// resource (the Verifier has no WithAudience); the Verifier's own failure
// budget, fed the Resource's source, answered 429.
var discard = slog.New(slog.DiscardHandler)

func TestBearer(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clk := clock.NewFake(now)
	f := newFakeCA(t)
	good, e := newKey(t, "ci-bot", now.Add(time.Hour))
	other, oe := newKey(t, "elsewhere", now.Add(time.Hour))
	oe.Audience = "https://other.example.com/mcp"
	f.publish(now, time.Minute, e, oe)
	v, err := apikey.New(f.srv.URL, f.roots(), apikey.WithClock(clk), apikey.WithLogger(discard), apikey.WithFailureLimit(1, 2))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Bearer("Not A Domain"); err == nil || err.Error() != `apikey: trust domain "Not A Domain" is not valid: use 1-255 characters of [a-z0-9._-]` {
		t.Fatalf("bad trust domain: %v", err)
	}
	bv, err := v.Bearer("acme.test")
	if err != nil {
		t.Fatal(err)
	}
	// The Resource's own limit is loose here, so the Verifier's is seen.
	rs, err := oauth.New(resource, nil, oauth.WithBearerVerifier(apikey.Prefix, bv), oauth.WithClock(clk),
		oauth.WithLogger(discard), oauth.WithFailureLimit(100, 100))
	if err != nil {
		t.Fatal(err)
	}
	ctx := oauth.WithSource(context.Background(), "192.0.2.1")
	tok, how, err := rs.Verify(ctx, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := tok.Identity
	if how != policy.AuthAPIKey || id.ID.String() != "spiffe://acme.test/client/ci-bot" || strings.Join(id.Roles, ",") != "reader" ||
		id.Attributes["team"] != "a" || id.Attributes["oauth.issuer"] != f.srv.URL || !tok.Expiry.Equal(now.Add(time.Hour)) {
		t.Fatalf("got %+v %s %+v", tok, how, id)
	}
	if e.Attributes["oauth.issuer"] != "" {
		t.Fatal("the key's attributes were modified")
	}
	again, _, _ := rs.Verify(ctx, good, nil)
	if again != tok {
		t.Error("the principal of a key is built again on each use")
	}

	_, _, err = rs.Verify(ctx, other, nil)
	if err == nil || err.Error() != "oauth: invalid_token: the token is for another resource (aud https://other.example.com/mcp), not "+resource {
		t.Fatalf("another audience: %v", err)
	}
	// (The other audience was the Resource's refusal: the Verifier counts
	// only its own, these two.)
	for range 2 {
		_, _, err = rs.Verify(ctx, apikey.Prefix+strings.Repeat("A", 49), nil)
		if err == nil || !strings.Contains(err.Error(), "oauth: invalid_token: apikey: not an mcpca API key") {
			t.Fatalf("malformed: %v", err)
		}
	}
	_, _, err = rs.Verify(ctx, good, nil)
	var e2 *oauth.Error
	if !errors.As(err, &e2) || e2.Status() != http.StatusTooManyRequests || e2.RetryAfter != time.Second ||
		err.Error() != "oauth: invalid_request: apikey: too many failed API key attempts from 192.0.2.1: try again later" {
		t.Fatalf("past the verifier's budget: %v", err)
	}
	if _, _, err := rs.Verify(oauth.WithSource(context.Background(), "192.0.2.2"), good, nil); err != nil {
		t.Fatalf("another source: %v", err)
	}

	// Verify itself, without WithAudience, refuses every key.
	if _, err := v.Verify(apikey.WithSource(context.Background(), "192.0.2.3"), good); !errors.Is(err, apikey.ErrAudience) ||
		err.Error() != `apikey: key "ci-bot": API key for another audience: this verifier names no audience of its own (WithAudience)` {
		t.Fatalf("Verify without an audience: %v", err)
	}
}
