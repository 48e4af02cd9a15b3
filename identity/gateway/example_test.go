package gateway_test

import (
	"log"
	"net/http"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/gateway"
	"github.com/mcpca/mcpca/identity/mcpauth"
)

// A gateway in front of an MCP server on loopback: mTLS with the Guard's
// verifier, every message decided by its policy, the caller told to the
// upstream in a signed header.
func ExampleNew() {
	var (
		guard *mcpauth.Guard             // mcpauth.New(verifier, policy, mcpauth.WithAuditLog(...))
		v     *identity.Verifier         // the one the Guard uses
		certs identity.CertificateSource // the gateway's own certificate (agent.Source, trust.FileCertificateSource)
	)
	gw, err := gateway.New(guard, "http://127.0.0.1:3001/mcp", gateway.WithCallerAssertion(certs))
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", gw)
	hs := &http.Server{Addr: ":8443", Handler: mux, TLSConfig: identity.ServerTLSConfig(certs, v), ConnContext: guard.ConnContext}
	log.Fatal(hs.ListenAndServeTLS("", ""))
}

// An upstream behind the gateway learns who called from the Mcpca-Caller
// header, and refuses requests that did not come through the gateway.
func ExampleVerifyCaller() {
	var v *identity.Verifier // trusts the CA's bundle, checks its CRL
	http.HandleFunc("/mcp", func(w http.ResponseWriter, r *http.Request) {
		c, err := gateway.VerifyCaller(r, v, gateway.WithGateways("spiffe://acme.test/server/gateway"),
			gateway.WithAudience("http://127.0.0.1:3001/mcp"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		log.Printf("call from %s (roles %v)", c.ID, c.Roles)
		// ... serve MCP ...
	})
}
