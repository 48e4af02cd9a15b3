package mcpauth_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/identity/trust"
)

// Protect a go-sdk MCP server: verify client certificates against the CA's
// root, decide every request with a Cedar policy that reloads on change,
// audit every decision, and serve Streamable HTTP over mTLS.
func Example() {
	bundle, err := trust.NewFileBundleSource("root_ca.crt")
	if err != nil {
		log.Fatal(err)
	}
	crl, err := trust.NewCRLFetcher("https://ca.example:9443/crl", trust.WithHTTPClient(trust.CAHTTPClient(bundle)))
	if err != nil {
		log.Fatal(err)
	}
	v, err := identity.NewVerifier(bundle, identity.WithTrustDomains("example.org"), identity.WithCRL(crl))
	if err != nil {
		log.Fatal(err)
	}
	authz, err := policy.New([]string{"policy.cedar"})
	if err != nil {
		log.Fatal(err)
	}
	auditLog, err := audit.Open("audit.log")
	if err != nil {
		log.Fatal(err)
	}
	guard, err := mcpauth.New(v, authz, mcpauth.WithAuditLog(auditLog))
	if err != nil {
		log.Fatal(err)
	}

	server := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1.0.0"}, nil)
	// ... server.AddTool, AddResource, AddPrompt ...

	cert, err := tls.LoadX509KeyPair("server.crt", "server.key")
	if err != nil {
		log.Fatal(err)
	}
	// One call wires everything: the middleware on server, the handler at
	// /mcp, mTLS with the verifier, the connection context, timeouts.
	hs := guard.Server(":8443", "/mcp", server, identity.StaticCertificate{Cert: &cert}, nil)
	log.Fatal(hs.ListenAndServeTLS("", ""))
}

// A tool handler reads the identity of its caller, which Guard.Middleware
// put in its context.
func ExampleFromContext() {
	whoami := func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		id, ok := mcpauth.FromContext(ctx)
		if !ok {
			return nil, nil, errors.New("no verified caller: is the server behind a Guard?")
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: id.ID.String()}}}, nil, nil
	}
	// Outside a Guard there is no identity.
	_, _, err := whoami(context.Background(), nil, struct{}{})
	fmt.Println(err)
	// Output: no verified caller: is the server behind a Guard?
}

// The whole server side in two calls: agent.NewWorkload gives the
// certificate (renewed), the CA's bundle and CRL and a verifier of them;
// Guard.Server serves the MCP server behind the Guard over mTLS.
func ExampleGuard_Server() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := agent.NewWorkload(ctx, "https://ca.example:9443",
		agent.WithRootFile("root_ca.crt"), agent.WithKeyPairFiles("files.crt", "files.key"))
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	authz, err := policy.New([]string{"policy.cedar"})
	if err != nil {
		log.Fatal(err)
	}
	guard, err := mcpauth.New(w.Verifier(), authz)
	if err != nil {
		log.Fatal(err)
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1.0.0"}, nil)
	hs := guard.Server(":8443", "/mcp", server, w.Source(), nil)
	log.Fatal(hs.ListenAndServeTLS("", ""))
}

// Accept OAuth access tokens as well as certificates: the Guard becomes a
// resource server of the authorization server at login.example.org, whose
// tokens name principals of example.org. Clients with a certificate, a
// token, or a token bound to their certificate reach the same policy, which
// sees how they authenticated in context.auth.
func ExampleWithResourceServer() {
	bundle, err := trust.NewFileBundleSource("root_ca.crt")
	if err != nil {
		log.Fatal(err)
	}
	v, err := identity.NewVerifier(bundle, identity.WithTrustDomains("example.org"))
	if err != nil {
		log.Fatal(err)
	}
	authz, err := policy.New([]string{"policy.cedar"})
	if err != nil {
		log.Fatal(err)
	}
	rs, err := oauth.New("https://mcp.example.org:8443/mcp",
		[]oauth.Issuer{{URL: "https://login.example.org", TrustDomain: "example.org"}})
	if err != nil {
		log.Fatal(err)
	}
	guard, err := mcpauth.New(v, authz, mcpauth.WithResourceServer(rs))
	if err != nil {
		log.Fatal(err)
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1.0.0"}, nil)
	cert, err := tls.LoadX509KeyPair("server.crt", "server.key")
	if err != nil {
		log.Fatal(err)
	}
	// Guard.Server also serves the RFC 9728 metadata, and its TLS asks for
	// a client certificate without requiring one.
	hs := guard.Server(":8443", "/mcp", server, identity.StaticCertificate{Cert: &cert}, nil)
	log.Fatal(hs.ListenAndServeTLS("", ""))
}
