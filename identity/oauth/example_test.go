package oauth_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/policy"
)

// A protected resource that accepts the tokens of one authorization
// server, for principals of the trust domain example.com. Its metadata and
// challenge tell a client without a token where to get one.
func Example() {
	rs, err := oauth.New("https://mcp.example.com/mcp",
		[]oauth.Issuer{{URL: "https://login.example.com", TrustDomain: "example.com"}},
		oauth.WithRequiredScopes("mcp"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rs.MetadataPaths())
	fmt.Println(rs.Challenge(nil))

	rec := httptest.NewRecorder()
	rs.MetadataHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/.well-known/oauth-protected-resource/mcp", nil))
	fmt.Print(rec.Body.String())
	// Output:
	// [/.well-known/oauth-protected-resource /.well-known/oauth-protected-resource/mcp]
	// Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp"
	// {"resource":"https://mcp.example.com/mcp","authorization_servers":["https://login.example.com"],"scopes_supported":["mcp"],"bearer_methods_supported":["header"],"tls_client_certificate_bound_access_tokens":true}
}

// keys is a BearerVerifier of API keys (a real one keeps only hashes).
type keys map[string]*oauth.Token

func (k keys) VerifyBearer(_ context.Context, key string) (*oauth.Token, error) {
	if t, ok := k[key]; ok {
		return t, nil
	}
	return nil, errors.New("unknown API key")
}

// API keys plug in as a BearerVerifier chosen by their prefix; the
// Resource holds what it returns to the same checks as a token.
func ExampleWithBearerVerifier() {
	ci := &identity.Identity{ID: identity.ID{TrustDomain: "example.com", Kind: identity.KindClient, Name: "ci"}, Roles: []string{"reader"}}
	rs, err := oauth.New("https://mcp.example.com/mcp", nil,
		oauth.WithBearerVerifier("mcpk_", keys{"mcpk_0123": {Identity: ci, Method: policy.AuthAPIKey}}))
	if err != nil {
		log.Fatal(err)
	}
	t, how, err := rs.Verify(context.Background(), "mcpk_0123", nil)
	fmt.Println(t.Identity.ID, how, err)
	_, _, err = rs.Verify(context.Background(), "mcpk_guess", nil)
	fmt.Println(err)
	// Output:
	// spiffe://example.com/client/ci api-key <nil>
	// oauth: invalid_token: unknown API key
}
