package oauth_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/mcpca/mcpca/identity/oauth"
)

// An introspection endpoint that redirects is not followed: the token is
// not sent to where it points, and the token is refused with the reason.
func TestIntrospectionRedirectNotFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		elsewhere.Add(1)
		_, _ = w.Write([]byte(`{"active":true,"sub":"alice","aud":"` + resource + `"}`))
	}))
	defer other.Close()
	var is *httptest.Server
	is = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/oauth-authorization-server":
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/jwks",
				"introspection_endpoint": is.URL + "/introspect"})
		case "/jwks":
			_, _ = w.Write([]byte(`{"keys":[]}`))
		default:
			http.Redirect(w, r, other.URL+"/introspect", http.StatusTemporaryRedirect)
		}
	}))
	defer is.Close()
	client := is.Client()
	client.Transport.(*http.Transport).TLSClientConfig.RootCAs.AddCert(other.Certificate())
	rs, err := oauth.New(resource, []oauth.Issuer{{URL: is.URL, TrustDomain: "acme.test"}}, oauth.WithHTTPClient(client),
		oauth.WithLogger(slog.New(slog.DiscardHandler)), oauth.WithIntrospection(is.URL, "rs", "secret", 0))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = rs.Verify(context.Background(), "opaque-1", nil)
	want := "oauth: invalid_token: introspecting the token at " + is.URL + `: 307 Temporary Redirect to "` + other.URL + `/introspect": a redirect is not followed (it would send the token elsewhere)`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect target was asked %d times", n)
	}
}
