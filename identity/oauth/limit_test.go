package oauth_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/identity/oauth"
)

// TestFailuresLimitedPerSource: a source that presents refused credentials
// past its budget is refused unread (429, RetryAfter), good tokens
// included, until the budget refills on the injected clock; other sources
// are not affected; every refusal is logged with the source and the reason,
// never the credential.
func TestFailuresLimitedPerSource(t *testing.T) {
	var logs bytes.Buffer
	f := newFixture(t, oauth.WithFailureLimit(1, 3), oauth.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	good := f.is.Mint(t, f.claims())
	c := f.claims()
	c["aud"] = "https://else.test/mcp"
	bad := f.is.Mint(t, c)
	attacker := oauth.WithSource(context.Background(), "192.0.2.7")
	other := oauth.WithSource(context.Background(), "192.0.2.8")

	for i := range 3 {
		_, _, err := f.rs.Verify(attacker, bad, nil)
		var oe *oauth.Error
		if !errors.As(err, &oe) || oe.Status() != http.StatusUnauthorized {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	for _, tok := range []string{bad, good, "mcpca_ak_made-up"} {
		_, _, err := f.rs.Verify(attacker, tok, nil)
		var oe *oauth.Error
		if !errors.As(err, &oe) || oe.Status() != http.StatusTooManyRequests || oe.RetryAfter != time.Second ||
			err.Error() != "oauth: invalid_request: too many refused bearer credentials from 192.0.2.7: try again in 1s" {
			t.Fatalf("past the budget: %v", err)
		}
	}
	if _, _, err := f.rs.Verify(other, good, nil); err != nil {
		t.Fatalf("another source: %v", err)
	}
	f.clk.Advance(time.Second)
	if _, _, err := f.rs.Verify(attacker, good, nil); err != nil {
		t.Fatalf("after a second the budget has one more: %v", err)
	}
	// Successes cost nothing.
	for range 5 {
		if _, _, err := f.rs.Verify(attacker, good, nil); err != nil {
			t.Fatal(err)
		}
	}
	// No source (a caller of Verify that names none): not limited.
	for range 5 {
		if _, _, err := f.rs.Verify(context.Background(), bad, nil); err == nil || strings.Contains(err.Error(), "too many") {
			t.Fatalf("without a source: %v", err)
		}
	}

	out := logs.String()
	for _, want := range []string{
		`"msg":"bearer credential refused","source":"192.0.2.7","reason":"the token is for another resource (aud https://else.test/mcp), not https://mcp.acme.test/mcp"`,
		`"msg":"bearer credential refused unread: source rate-limited","source":"192.0.2.7","not_logged_since_last":0`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	// The rate-limited refusals after the first are counted, not logged, for a second.
	if n := strings.Count(out, "source rate-limited"); n != 1 {
		t.Errorf("%d rate-limited lines, want 1:\n%s", n, out)
	}
	for _, tok := range []string{good, bad} {
		sig := tok[strings.LastIndex(tok, ".")+1:]
		if strings.Contains(out, sig) || strings.Contains(out, tok[:40]) {
			t.Errorf("the log holds a token:\n%s", out)
		}
	}
	if strings.Contains(out, "made-up") {
		t.Errorf("the log holds an API key:\n%s", out)
	}
}

func TestFailureLimitRefusedAtNew(t *testing.T) {
	_, err := oauth.New(resource, []oauth.Issuer{{URL: "https://as.test"}}, oauth.WithFailureLimit(0, 3))
	if err == nil || err.Error() != "oauth: failure limit 0/s, burst 3: both must be positive" {
		t.Fatalf("got %v", err)
	}
}
