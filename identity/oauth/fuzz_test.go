package oauth_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/internal/oauthtest"
)

// FuzzVerify feeds untrusted bearer tokens to the verifier: it never
// panics and never accepts what the issuer did not sign.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	good := fx.is.Mint(f, fx.claims())
	for _, s := range []string{good, oauthtest.Unsigned(f, fx.claims()), "a.b.c", "..", "eyJhbGciOiJFUzI1NiJ9.e30.", good + "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		got, _, err := fx.rs.Verify(context.Background(), tok, nil)
		// Only the issuer's signature makes a token: whatever is accepted
		// says what the issuer signed.
		if err == nil && (got.Subject != "spiffe://acme.test/client/alice" || got.ID != fx.claims()["jti"]) {
			t.Fatalf("accepted %q as %+v", tok, got)
		}
	})
}

// FuzzBearerToken: the Authorization header parser never panics, and what
// it returns is a token without spaces.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  a.b.c", "Basic x", "Bearer", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Authorization": {v}}
		tok, _, err := oauth.BearerToken(h)
		if err == nil && strings.ContainsAny(tok, " \t") {
			t.Fatalf("token %q has a space", tok)
		}
	})
}

// FuzzInspect: the claim mapping (shared by JWTs, introspection answers
// and policy explain) never panics on a payload, and what it maps is
// within the identity contract.
func FuzzInspect(f *testing.F) {
	for _, s := range []string{`{"iss":"https://as.test","sub":"alice","aud":"x","roles":["a","B"],"scope":"s t","attrs":{"k":"v"}}`,
		`{"sub":"spiffe://as.test/client/a","cnf":{"x5t#S256":"AAAA"},"aud":["a","b"],"exp":1e300}`, `{"sub":1}`, `[]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		enc := base64.RawURLEncoding.EncodeToString
		tok, err := oauth.Inspect(enc([]byte(`{"alg":"ES256"}`))+"."+enc([]byte(payload))+".c2ln", oauth.Issuer{URL: "https://as.test"})
		if err != nil {
			return
		}
		if err := tok.Identity.ID.Validate(); err != nil {
			t.Fatalf("mapped to an invalid ID: %v", err)
		}
		if err := identity.ValidateRoles(tok.Identity.Roles); err != nil {
			t.Fatalf("mapped to invalid roles: %v", err)
		}
		if err := identity.ValidateAttributes(tok.Identity.Attributes); err != nil {
			t.Fatalf("mapped to invalid attributes: %v", err)
		}
	})
}
