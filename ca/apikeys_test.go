package ca_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/apikey"
	"github.com/mcpca/mcpca/internal/caclient"
	"github.com/mcpca/mcpca/internal/pgtest"
)

// apiKeyOp mints the operator token for req and posts it.
func apiKeyOp(t *testing.T, c *catest.CA, req ca.APIKeyRequest) (*ca.APIKeyResponse, error) {
	t.Helper()
	tok, err := ca.MintAPIKeyToken(c.Dir, c.Password, "", &req)
	if err != nil {
		t.Fatal(err)
	}
	req.Token = tok
	var resp ca.APIKeyResponse
	err = c.Client.APIKeys(context.Background(), &req, &resp)
	return &resp, err
}

// wantAPIErrorIs wants the CA's exact message.
func wantAPIErrorIs(t *testing.T, err error, status int, msg string) {
	t.Helper()
	var ae *caclient.APIError
	if !errors.As(err, &ae) || ae.Status != status || ae.Message != msg {
		t.Fatalf("got %v, want %d %q", err, status, msg)
	}
}

func TestAPIKeyCreateVerifyRevokeWithinBound(t *testing.T) {
	testAPIKeyCreateVerifyRevoke(t)
}

// TestAPIKeysOnPostgres: the same with the CA on PostgreSQL: keys created,
// listed and revoked through the CA, and the signed set it serves verified
// (skips without PostgreSQL, fails under MCPCA_REQUIRE_POSTGRES=1).
func TestAPIKeysOnPostgres(t *testing.T) {
	c := testAPIKeyCreateVerifyRevoke(t, ca.WithPostgres(pgtest.DSN(t)))
	if b := c.Server.Store().Backend(); b != "postgresql" {
		t.Fatalf("backend %s", b)
	}
}

// testAPIKeyCreateVerifyRevoke: a key created through the CA (with opts) is
// verified from the set it serves, and refused one refresh interval after
// its revocation.
func testAPIKeyCreateVerifyRevoke(t *testing.T, opts ...ca.Option) *catest.CA {
	clk := clock.NewFake(time.Now())
	c := catest.Start(t, catest.Options{CAOptions: append([]ca.Option{ca.WithClock(clk)}, opts...)})
	key, hash, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	create := ca.APIKeyRequest{Op: "create", Name: "ci-bot", Hash: apikey.EncodeHash(hash), Roles: []string{"reader"},
		Attributes: map[string]string{"team": "a"}, Audience: testResource, TTL: "720h"}
	resp, err := apiKeyOp(t, c, create)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Keys) != 1 || resp.Keys[0].Name != "ci-bot" || !resp.Keys[0].ExpiresAt.Equal(clk.Now().Add(720*time.Hour)) {
		t.Fatalf("create answered %+v", resp)
	}

	refreshed := make(chan error, 16)
	v, err := apikey.New(c.URL, c.Roots, apikey.WithAudience(testResource), apikey.WithClock(clk),
		apikey.WithRefreshInterval(15*time.Second), apikey.WithOnRefresh(func(err error) { refreshed <- err }),
		apikey.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	armed := clk.Changed()
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	<-armed
	k, err := v.Verify(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != "ci-bot" || strings.Join(k.Roles, ",") != "reader" || k.Attributes["team"] != "a" || k.Audience != testResource {
		t.Fatalf("verified %+v", k)
	}

	// Revoked: refused after at most one refresh interval.
	if _, err := apiKeyOp(t, c, ca.APIKeyRequest{Op: "revoke", Name: "ci-bot"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(15 * time.Second)
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, key); !errors.Is(err, apikey.ErrUnknown) {
		t.Fatalf("15s after revocation: %v", err)
	}
	cancel()
	<-done

	// Listed, revoked, without its hash.
	resp, err = apiKeyOp(t, c, ca.APIKeyRequest{Op: "list"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Keys) != 1 || resp.Keys[0].RevokedAt.IsZero() || resp.Keys[0].Provisioner != "admin" {
		t.Fatalf("list %+v", resp.Keys)
	}
	return c
}

// TestAPIKeySetBoundsAStaleVerifier: a verifier that cannot refresh
// refuses every key once the set's validity has passed.
func TestAPIKeySetBoundsAStaleVerifier(t *testing.T) {
	clk := clock.NewFake(time.Now())
	c := catest.Start(t, catest.Options{CAOptions: []ca.Option{ca.WithClock(clk)}})
	key, hash, _ := apikey.Generate()
	if _, err := apiKeyOp(t, c, ca.APIKeyRequest{Op: "create", Name: "ci-bot", Hash: apikey.EncodeHash(hash), Audience: testResource, TTL: "1h"}); err != nil {
		t.Fatal(err)
	}
	v, err := apikey.New(c.URL, c.Roots, apikey.WithAudience(testResource), apikey.WithClock(clk), apikey.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(ca.DefaultKeySetValidity - time.Second)
	if _, err := v.Verify(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if _, err := v.Verify(context.Background(), key); !errors.Is(err, apikey.ErrNoKeySet) {
		t.Fatalf("past the set's validity: %v", err)
	}
}

func TestAPIKeyRefusals(t *testing.T) {
	c := catest.Start(t, catest.Options{})
	_, hash, _ := apikey.Generate()
	h := apikey.EncodeHash(hash)
	create := ca.APIKeyRequest{Op: "create", Name: "ci-bot", Hash: h, Audience: testResource, TTL: "720h"}
	if _, err := apiKeyOp(t, c, create); err != nil {
		t.Fatal(err)
	}
	_, err := apiKeyOp(t, c, create)
	wantAPIErrorIs(t, err, 409, `ca: an API key named "ci-bot" is in force: revoke it first, or choose another name`)

	bad := create
	bad.Name, bad.TTL = "other", "0s"
	_, err = apiKeyOp(t, c, bad)
	wantAPIErrorIs(t, err, 400, `ca: API key lifetime "0s" is outside (0, 8784h0m0s]`)
	bad.TTL, bad.Audience = "1h", "http://mcp.example.com"
	_, err = apiKeyOp(t, c, bad)
	wantAPIErrorIs(t, err, 400, `ca: apikey: audience "http://mcp.example.com" is not an absolute https URL without fragment (e.g. https://mcp.example.com/mcp)`)
	bad.Audience, bad.Name = testResource, "Bad Name"
	_, err = apiKeyOp(t, c, bad)
	wantAPIErrorIs(t, err, 400, `ca: API key name "Bad Name": use 1-64 characters of [a-z0-9._-], starting with a letter or digit`)

	_, err = apiKeyOp(t, c, ca.APIKeyRequest{Op: "revoke", Name: "nobody"})
	wantAPIErrorIs(t, err, 404, `ca: no API key named "nobody" is in force`)

	// A token is spent once, and serves only the request it names.
	req := ca.APIKeyRequest{Op: "list"}
	tok, err := ca.MintAPIKeyToken(c.Dir, c.Password, "", &req)
	if err != nil {
		t.Fatal(err)
	}
	req.Token = tok
	var resp ca.APIKeyResponse
	if err := c.Client.APIKeys(context.Background(), &req, &resp); err != nil {
		t.Fatal(err)
	}
	err = c.Client.APIKeys(context.Background(), &req, &resp)
	wantAPIErrorIs(t, err, 401, "ca: token rejected: token already used")
	rev := ca.APIKeyRequest{Op: "revoke", Name: "ci-bot"}
	tok, _ = ca.MintAPIKeyToken(c.Dir, c.Password, "", &rev)
	rev.Name = "other"
	rev.Token = tok
	err = c.Client.APIKeys(context.Background(), &rev, &resp)
	wantAPIErrorIs(t, err, 403, `ca: the token's subject "apikey revoke ci-bot" is not this request's "apikey revoke other"`)
	// An enrolment token is not an operator token for API keys.
	enrol := c.Token(ca.TokenRequest{Kind: "client", Name: "x"})
	err = c.Client.APIKeys(context.Background(), &ca.APIKeyRequest{Op: "list", Token: enrol}, &resp)
	wantAPIErrorIs(t, err, 401, `ca: token rejected: audience "`+c.URL+`/1.0/sign" is not this CA's `+c.URL+`/1.0/apikeys`)
}
