package oauth_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/internal/oauthtest"
)

const resource = "https://mcp.acme.test/mcp"

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

type fixture struct {
	is  *oauthtest.Issuer
	rs  *oauth.Resource
	clk *clock.Fake
}

func newFixture(t testing.TB, opts ...oauth.Option) *fixture {
	t.Helper()
	is := oauthtest.New(t)
	clk := clock.NewFake(t0)
	opts = append([]oauth.Option{oauth.WithClock(clk), oauth.WithHTTPClient(is.Client()),
		oauth.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	rs, err := oauth.New(resource, []oauth.Issuer{{URL: is.URL, TrustDomain: "acme.test"}}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{is: is, rs: rs, clk: clk}
}

func (f *fixture) claims() map[string]any {
	return f.is.Claims(resource, "spiffe://acme.test/client/alice", t0)
}

func verify(t *testing.T, f *fixture, tok string, peer *identity.Identity) (*oauth.Token, policy.AuthMethod, error) {
	t.Helper()
	return f.rs.Verify(context.Background(), tok, peer)
}

func TestVerifyAccepts(t *testing.T) {
	f := newFixture(t)
	c := f.claims()
	c["roles"] = []string{"reader", "Not A Role", "reader"}
	c["scope"] = "mcp:tools admin"
	c["attrs"] = map[string]any{"team": "payments", "BAD KEY": "x", "n": 3}
	tok, how, err := verify(t, f, f.is.Mint(t, c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if how != policy.AuthToken {
		t.Errorf("method %q, want token", how)
	}
	id := tok.Identity
	if id.ID.String() != "spiffe://acme.test/client/alice" || strings.Join(id.Roles, ",") != "reader,admin" {
		t.Errorf("identity %s roles %v", id.ID, id.Roles)
	}
	if id.Attributes["team"] != "payments" || id.Attributes["oauth.issuer"] != f.is.URL || id.Attributes["oauth.client_id"] != "test-client" || len(id.Attributes) != 3 {
		t.Errorf("attributes %v", id.Attributes)
	}
	if !id.NotAfter.Equal(t0.Add(time.Hour)) || tok.Scopes[0] != "mcp:tools" {
		t.Errorf("not after %v scopes %v", id.NotAfter, tok.Scopes)
	}
	// A plain name in sub lies in the issuer's trust domain.
	c = f.claims()
	c["sub"] = "build-bot"
	tok, _, err = verify(t, f, f.is.Mint(t, c), nil)
	if err != nil || tok.Identity.ID.String() != "spiffe://acme.test/client/build-bot" {
		t.Fatalf("got %v, %v", tok, err)
	}
	// typ JWT and no typ are accepted too (RFC 9068 says at+jwt; many
	// issuers say JWT).
	for _, typ := range []string{"JWT", "application/at+jwt"} {
		tok := oauthtest.Sign(t, f.is.Key(), jose.ES256, map[jose.HeaderKey]any{"kid": f.is.CurrentKID(), "typ": typ}, f.claims())
		if _, _, err := verify(t, f, tok, nil); err != nil {
			t.Errorf("typ %s: %v", typ, err)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	f := newFixture(t)
	other := oauthtest.New(t)
	with := func(k string, v any) map[string]any {
		c := f.claims()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	forged := oauthtest.NewKey(t)
	for _, tc := range []struct {
		name, tok, want string
	}{
		{"another audience", f.is.Mint(t, with("aud", "https://other.test/mcp")), "invalid_token: the token is for another resource (aud https://other.test/mcp), not " + resource},
		{"no audience", f.is.Mint(t, with("aud", nil)), "invalid_token: no aud claim: the token names no resource"},
		{"another issuer", other.Mint(t, other.Claims(resource, "spiffe://acme.test/client/alice", t0)), `invalid_token: issuer "` + other.URL + `" is not trusted here`},
		{"iss claim differs from the signer", f.is.Mint(t, with("iss", f.is.URL+"/")), `invalid_token: issuer "` + f.is.URL + `/" is not trusted here`},
		{"expired", f.is.Mint(t, with("exp", t0.Add(-time.Minute).Unix())), "invalid_token: the token expired at 2026-12-01T09:59:00Z"},
		{"no exp", f.is.Mint(t, with("exp", nil)), "invalid_token: no exp claim: an access token must expire"},
		{"not yet valid", f.is.Mint(t, with("nbf", t0.Add(time.Hour).Unix())), "invalid_token: the token is not valid before 2026-12-01T11:00:00Z"},
		{"issued in the future", f.is.Mint(t, with("iat", t0.Add(time.Hour).Unix())), "invalid_token: issued in the future (iat 2026-12-01T11:00:00Z)"},
		{"unsigned (alg none)", oauthtest.Unsigned(t, f.claims()), "invalid_token: not a signed JWT with an accepted algorithm"},
		{"HMAC (HS256)", oauthtest.HS256(t, []byte("0123456789abcdef0123456789abcdef"), f.is.CurrentKID(), f.claims()), "invalid_token: not a signed JWT with an accepted algorithm"},
		{"wrongly signed (the issuer's kid, another key)", oauthtest.Sign(t, forged, jose.ES256, map[jose.HeaderKey]any{"kid": f.is.CurrentKID(), "typ": "at+jwt"}, f.claims()), "invalid_token: signature does not verify with the key of issuer " + f.is.URL},
		{"re-signed with a new kid", oauthtest.Sign(t, forged, jose.ES256, map[jose.HeaderKey]any{"kid": "attacker", "typ": "at+jwt"}, f.claims()), `invalid_token: issuer ` + f.is.URL + ` has no key "attacker" for ES256`},
		{"an ID token type", oauthtest.Sign(t, forged, jose.ES256, map[jose.HeaderKey]any{"kid": "k1", "typ": "mcpca-caller+jwt"}, f.claims()), `invalid_token: token type "mcpca-caller+jwt" is not an access token (want at+jwt)`},
		{"subject outside the trust domain", f.is.Mint(t, with("sub", "spiffe://evil.test/client/alice")), "invalid_token: subject spiffe://evil.test/client/alice is outside the trust domain acme.test that issuer " + f.is.URL + " speaks for"},
		{"subject not a name", f.is.Mint(t, with("sub", "alice@example.com")), `invalid_token: subject "alice@example.com" cannot name a principal`},
		{"no subject", f.is.Mint(t, with("sub", nil)), "invalid_token: no sub claim"},
		{"DPoP-bound", f.is.Mint(t, with("cnf", map[string]any{"jkt": "abc"})), "invalid_token: the token is bound to a key by a method this server does not check"},
		{"duplicate claim", dupClaims(t, f), `invalid_token: payload: duplicate key "aud"`},
		{"not a JWT", "opaque-token-value", "invalid_token: not a JWT access token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := verify(t, f, tc.tok, nil)
			var oe *oauth.Error
			if !errors.As(err, &oe) || oe.Status() != http.StatusUnauthorized || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want 401 %q", err, tc.want)
			}
		})
	}
}

// dupClaims signs a payload with "aud" twice, the second naming this
// resource: a reader that keeps the last key would accept it.
func dupClaims(t *testing.T, f *fixture) string {
	return f.is.SignRaw(t, `{"iss":"`+f.is.URL+`","sub":"spiffe://acme.test/client/alice","aud":"https://other.test","aud":"`+resource+`","exp":`+itoa(t0.Add(time.Hour).Unix())+`}`)
}

func TestKeyRotationAndRefetchBound(t *testing.T) {
	f := newFixture(t)
	if _, _, err := verify(t, f, f.is.Mint(t, f.claims()), nil); err != nil {
		t.Fatal(err)
	}
	if n := f.is.KeyFetches.Load(); n != 1 {
		t.Fatalf("%d key fetches, want 1", n)
	}
	// The issuer rotates: a token with the new kid makes the keys be
	// fetched again (the refetch interval has passed).
	f.clk.Advance(oauth.DefaultKeyRefetch)
	f.is.Rotate(t, false)
	if _, _, err := verify(t, f, f.is.Mint(t, f.claims()), nil); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	oldSigner, oldKid := f.is.Key(), f.is.CurrentKID()
	// Unknown kids: the first, once the interval has passed, makes the
	// keys be fetched again; the others, within the interval, do not reach
	// the issuer.
	f.clk.Advance(oauth.DefaultKeyRefetch)
	forged := oauthtest.NewKey(t)
	for i := range 5 {
		tok := oauthtest.Sign(t, forged, jose.ES256, map[jose.HeaderKey]any{"kid": "made-up-" + itoa(int64(i)), "typ": "at+jwt"}, f.claims())
		if _, _, err := verify(t, f, tok, nil); err == nil {
			t.Fatal("a made-up kid was accepted")
		}
	}
	if n := f.is.KeyFetches.Load(); n != 3 {
		t.Fatalf("%d key fetches, want 3 (first use, rotation, one refetch for the made-up kids)", n)
	}
	// A withdrawn key stops working once the keys are older than their
	// maximum age and fetched again.
	f.is.Rotate(t, false)
	f.clk.Advance(oauth.DefaultKeysMaxAge)
	c := f.claims()
	c["exp"] = f.clk.Now().Add(time.Hour).Unix()
	oldKey := oauthtest.Sign(t, oldSigner, jose.ES256, map[jose.HeaderKey]any{"kid": oldKid, "typ": "at+jwt"}, c)
	if _, _, err := verify(t, f, oldKey, nil); err == nil || !strings.Contains(err.Error(), "has no key") {
		t.Fatalf("a token of a withdrawn key: %v", err)
	}
	if _, _, err := verify(t, f, f.is.Mint(t, c), nil); err != nil {
		t.Fatalf("a token of the newest key: %v", err)
	}
}

func TestCachedTokenExpires(t *testing.T) {
	f := newFixture(t)
	tok := f.is.Mint(t, f.claims())
	if _, _, err := verify(t, f, tok, nil); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(time.Hour + oauth.DefaultLeeway)
	if _, _, err := verify(t, f, tok, nil); err == nil || !strings.Contains(err.Error(), "the token expired at") {
		t.Fatalf("a cached token past its expiry: %v", err)
	}
}

func peerWith(der []byte) *identity.Identity {
	id := &identity.Identity{ID: identity.ID{TrustDomain: "acme.test", Kind: identity.KindClient, Name: "alice"}}
	id.Fingerprint = sha256.Sum256(der)
	return id
}

func TestCertificateBoundTokens(t *testing.T) {
	f := newFixture(t)
	cert, otherCert := []byte("the DER of alice's certificate"), []byte("another certificate")
	c := f.claims()
	c["cnf"] = map[string]any{"x5t#S256": oauth.Thumbprint(cert)}
	bound := f.is.Mint(t, c)
	if _, how, err := verify(t, f, bound, peerWith(cert)); err != nil || how != policy.AuthBoundToken {
		t.Fatalf("bound token with its certificate: %v, %v", how, err)
	}
	for _, tc := range []struct {
		name string
		peer *identity.Identity
		want string
	}{
		{"no certificate", nil, "invalid_token: the token is bound to a client certificate (cnf.x5t#S256): present that certificate"},
		{"another certificate", peerWith(otherCert), "invalid_token: the token is bound to another client certificate than the one presented"},
	} {
		if _, _, err := verify(t, f, bound, tc.peer); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
	// An unbound token with a certificate is a plain token.
	if _, how, err := verify(t, f, f.is.Mint(t, f.claims()), peerWith(cert)); err != nil || how != policy.AuthToken {
		t.Fatalf("unbound token: %v, %v", how, err)
	}
	// Bad thumbprints are refused.
	c["cnf"] = map[string]any{"x5t#S256": "not base64url!"}
	if _, _, err := verify(t, f, f.is.Mint(t, c), peerWith(cert)); err == nil || !strings.Contains(err.Error(), "cnf.x5t#S256 is not the base64url SHA-256 of a certificate") {
		t.Fatalf("bad thumbprint: %v", err)
	}

	strict := newFixture(t, oauth.WithRequireBoundTokens())
	if _, _, err := verify(t, strict, strict.is.Mint(t, strict.claims()), peerWith(cert)); err == nil ||
		!strings.Contains(err.Error(), "invalid_token: this resource accepts only certificate-bound tokens (RFC 8705)") {
		t.Fatalf("unbound token where bound ones are required: %v", err)
	}
}

func TestInsufficientScope(t *testing.T) {
	f := newFixture(t, oauth.WithRequiredScopes("mcp"))
	_, _, err := verify(t, f, f.is.Mint(t, f.claims()), nil)
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Status() != http.StatusForbidden || oe.Code != oauth.CodeInsufficientScope {
		t.Fatalf("got %v, want 403 insufficient_scope", err)
	}
	if got, want := f.rs.Challenge(err), `Bearer resource_metadata="https://mcp.acme.test/.well-known/oauth-protected-resource/mcp", error="insufficient_scope", error_description="the token lacks scope mcp", scope="mcp"`; got != want {
		t.Errorf("challenge\n got %s\nwant %s", got, want)
	}
	c := f.claims()
	c["scope"] = "mcp other"
	if _, _, err := verify(t, f, f.is.Mint(t, c), nil); err != nil {
		t.Fatal(err)
	}
}

func TestChallenge(t *testing.T) {
	f := newFixture(t)
	if got, want := f.rs.Challenge(nil), `Bearer resource_metadata="https://mcp.acme.test/.well-known/oauth-protected-resource/mcp"`; got != want {
		t.Errorf("no token:\n got %s\nwant %s", got, want)
	}
	_, _, err := verify(t, f, "a.b.c", nil)
	if got := f.rs.Challenge(err); !strings.HasPrefix(got, `Bearer resource_metadata="https://mcp.acme.test/.well-known/oauth-protected-resource/mcp", error="invalid_token", error_description="`) {
		t.Errorf("invalid token: %s", got)
	}
}

func TestMetadata(t *testing.T) {
	f := newFixture(t, oauth.WithScopesSupported("mcp"))
	if got := strings.Join(f.rs.MetadataPaths(), " "); got != "/.well-known/oauth-protected-resource /.well-known/oauth-protected-resource/mcp" {
		t.Errorf("paths %s", got)
	}
	rec := httptest.NewRecorder()
	f.rs.MetadataHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/oauth-protected-resource/mcp", nil))
	want := `{"resource":"https://mcp.acme.test/mcp","authorization_servers":["` + f.is.URL + `"],"scopes_supported":["mcp"],"bearer_methods_supported":["header"],"tls_client_certificate_bound_access_tokens":true}` + "\n"
	if rec.Code != 200 || rec.Body.String() != want || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("got %d %s\nwant %s", rec.Code, rec.Body, want)
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		hdr     []string
		tok     string
		present bool
		err     string
	}{
		{nil, "", false, ""},
		{[]string{"Bearer abc.def.ghi"}, "abc.def.ghi", true, ""},
		{[]string{"bearer  abc"}, "abc", true, ""},
		{[]string{"Basic dXNlcjpwYXNz"}, "", true, "oauth: invalid_request: the Authorization header is not a Bearer credential"},
		{[]string{"Bearer a", "Bearer b"}, "", true, "oauth: invalid_request: more than one Authorization header"},
		{[]string{"Bearer "}, "", true, "oauth: invalid_request: the bearer token is empty, too long or malformed"},
		{[]string{`Bearer a"b`}, "", true, "oauth: invalid_request: the bearer token is empty, too long or malformed"},
	} {
		h := http.Header{}
		for _, v := range tc.hdr {
			h.Add("Authorization", v)
		}
		tok, present, err := oauth.BearerToken(h)
		if tok != tc.tok || present != tc.present || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("%q: got %q %v %v, want %q %v %q", tc.hdr, tok, present, err, tc.tok, tc.present, tc.err)
		}
	}
}

// apiKeys is a BearerVerifier of made-up keys, to check the plug.
type apiKeys map[string]*oauth.Token

func (k apiKeys) VerifyBearer(_ context.Context, tok string) (*oauth.Token, error) {
	if t := k[tok]; t != nil {
		return t, nil
	}
	return nil, errors.New("unknown API key")
}

func TestBearerVerifierPlugsIn(t *testing.T) {
	keys := apiKeys{"mcpk_good": {Method: policy.AuthAPIKey, Identity: &identity.Identity{
		ID: identity.ID{TrustDomain: "acme.test", Kind: identity.KindClient, Name: "ci"}, Roles: []string{"reader"}}}}
	f := newFixture(t, oauth.WithBearerVerifier("mcpk_", keys))
	tok, how, err := verify(t, f, "mcpk_good", nil)
	if err != nil || how != policy.AuthAPIKey || tok.Identity.ID.Name != "ci" {
		t.Fatalf("got %v %v %v", tok, how, err)
	}
	if _, _, err := verify(t, f, "mcpk_bad", nil); err == nil || err.Error() != "oauth: invalid_token: unknown API key" {
		t.Fatalf("got %v", err)
	}
	// A key with an audience is held to it.
	keys["mcpk_aud"] = &oauth.Token{Method: policy.AuthAPIKey, Audience: []string{"https://else.test/mcp"}, Identity: keys["mcpk_good"].Identity}
	if _, _, err := verify(t, f, "mcpk_aud", nil); err == nil || !strings.Contains(err.Error(), "the token is for another resource") {
		t.Fatalf("got %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		issuers []oauth.Issuer
		opts    []oauth.Option
		want    string
	}{
		{nil, nil, "oauth: no token issuer: name at least one"},
		{[]oauth.Issuer{{URL: "http://as.test"}}, nil, `oauth: issuer "http://as.test": an issuer is an https:// URL (RFC 8414)`},
		{[]oauth.Issuer{{URL: "https://as.test?x=1"}}, nil, `oauth: issuer "https://as.test?x=1": want https://HOST[/PATH], without query, fragment or user`},
		{[]oauth.Issuer{{URL: "https://as.test"}, {URL: "https://as.test"}}, nil, "oauth: issuer https://as.test named twice"},
		{[]oauth.Issuer{{URL: "https://as.test"}}, []oauth.Option{oauth.WithAlgorithms(jose.HS256)}, "oauth: algorithm HS256 is never accepted"},
		{[]oauth.Issuer{{URL: "https://as.test"}}, []oauth.Option{oauth.WithLeeway(time.Hour)}, "oauth: the leeway must be between 0 and 5m0s, got 1h0m0s"},
	} {
		_, err := oauth.New(resource, tc.issuers, tc.opts...)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	if _, err := oauth.New("http://mcp.test/mcp", []oauth.Issuer{{URL: "https://as.test"}}); err == nil || err.Error() != `oauth: resource "http://mcp.test/mcp": want an https:// URL without a fragment` {
		t.Errorf("http resource: %v", err)
	}
	if is, err := oauth.ParseIssuer("https://Login.Example.com:8443/t"); err != nil || is.TrustDomain != "login.example.com" {
		t.Errorf("ParseIssuer: %+v %v", is, err)
	}
	if is, err := oauth.ParseIssuer("https://login.example.com=acme.test"); err != nil || is.TrustDomain != "acme.test" || is.URL != "https://login.example.com" {
		t.Errorf("ParseIssuer with a trust domain: %+v %v", is, err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestIntrospection(t *testing.T) {
	f := newFixture(t)
	rs, err := oauth.New(resource, []oauth.Issuer{{URL: f.is.URL, TrustDomain: "acme.test"}}, oauth.WithClock(f.clk),
		oauth.WithHTTPClient(f.is.Client()), oauth.WithLogger(slog.New(slog.DiscardHandler)),
		oauth.WithIntrospection(f.is.URL, oauthtest.IntrospectClient, oauthtest.IntrospectSecret, 0))
	if err != nil {
		t.Fatal(err)
	}
	ans := map[string]any{"active": true, "client_id": "build-bot", "aud": resource, "exp": t0.Add(30 * time.Second).Unix(),
		"scope": "mcp reader", "iss": f.is.URL}
	f.is.Opaque("opaque-1", ans)
	tok, how, err := rs.Verify(context.Background(), "opaque-1", nil)
	if err != nil || how != policy.AuthToken || tok.Identity.ID.String() != "spiffe://acme.test/client/build-bot" || strings.Join(tok.Identity.Roles, ",") != "mcp,reader" {
		t.Fatalf("got %+v %v %v", tok, how, err)
	}
	// Cached: the issuer is not asked again...
	if _, _, err := rs.Verify(context.Background(), "opaque-1", nil); err != nil || f.is.Introspections.Load() != 1 {
		t.Fatalf("second use: %v, %d introspections", err, f.is.Introspections.Load())
	}
	// ...no longer than the token lives: past its exp it is asked again,
	// and a token it forgot (revoked) is refused.
	f.is.Opaque("opaque-1", nil)
	f.clk.Advance(31 * time.Second)
	if _, _, err := rs.Verify(context.Background(), "opaque-1", nil); err == nil || !strings.Contains(err.Error(), "says the token is not active") || f.is.Introspections.Load() != 2 {
		t.Fatalf("after exp: %v, %d introspections", err, f.is.Introspections.Load())
	}
	// A long-lived token is asked about again after the cache bound.
	ans["exp"] = f.clk.Now().Add(time.Hour).Unix()
	f.is.Opaque("opaque-2", ans)
	if _, _, err := rs.Verify(context.Background(), "opaque-2", nil); err != nil {
		t.Fatal(err)
	}
	f.is.Opaque("opaque-2", nil)
	f.clk.Advance(oauth.DefaultIntrospectionCache)
	if _, _, err := rs.Verify(context.Background(), "opaque-2", nil); err == nil || !strings.Contains(err.Error(), "invalid_token: issuer "+f.is.URL+" says the token is not active") {
		t.Fatalf("revoked, after the cache bound: %v", err)
	}
	// Another audience is refused as for a JWT.
	other := map[string]any{"active": true, "sub": "alice", "aud": "https://other.test/mcp", "exp": f.clk.Now().Add(time.Hour).Unix()}
	f.is.Opaque("opaque-3", other)
	if _, _, err := rs.Verify(context.Background(), "opaque-3", nil); err == nil || !strings.Contains(err.Error(), "the token is for another resource") {
		t.Fatalf("another audience: %v", err)
	}
	if _, err := oauth.New(resource, []oauth.Issuer{{URL: f.is.URL}}, oauth.WithIntrospection("https://else.test", "a", "b", 0)); err == nil ||
		err.Error() != "oauth: introspection at https://else.test, which is not one of the token issuers" {
		t.Fatalf("introspection at an unknown issuer: %v", err)
	}
}
