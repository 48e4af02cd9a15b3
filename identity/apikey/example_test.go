package apikey_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"log"
	"net/http"
	"strings"

	"github.com/mcpca/mcpca/identity/apikey"
)

// A key is recognisable (its prefix) and self-checking (its checksum): a
// mistyped or cut key is refused before any lookup.
func ExampleCheck() {
	key, _, err := apikey.Generate()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.HasPrefix(key, apikey.Prefix), len(key), apikey.Check(key))
	fmt.Println(apikey.Check(key[:40]))
	// Output:
	// true 58 <nil>
	// apikey: not an mcpca API key: 40 characters, want 58
}

// A server checks the API keys of its callers against the CA's signed key
// set, refreshed in the background: no call to the CA per request.
func ExampleVerifier() {
	var roots *x509.CertPool // the CA's root (mcpca bootstrap)
	v, err := apikey.New("https://ca.internal:9443", roots,
		apikey.WithAudience("https://mcp.example.com/mcp"))
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = v.Run(context.Background()) }()
	http.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		k, err := v.VerifyRequest(r) // Authorization: Bearer mcpca_ak_...
		if err != nil {
			http.Error(w, "invalid API key", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "hello %s (roles %v)\n", k.Name, k.Roles)
	})
}
