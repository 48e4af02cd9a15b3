package identity_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/trust"
)

// An MCP server that accepts clients of one trust domain, follows root
// rotations in a bundle file, and checks revocation against the CA's CRL.
func ExampleServerTLSConfig() {
	ctx := context.Background()
	roots, err := trust.NewFileBundleSource("/etc/mcpca/roots.pem")
	if err != nil {
		log.Fatal(err)
	}
	go roots.Run(ctx) // re-read every 5 minutes

	crl, err := trust.NewCRLFetcher("https://ca.example.org:9443/crl",
		trust.WithHTTPClient(trust.CAHTTPClient(roots)),
		trust.WithRefreshInterval(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	go crl.Run(ctx)

	v, err := identity.NewVerifier(roots,
		identity.WithTrustDomains("example.org"),
		identity.WithCRL(crl)) // fail closed once the CRL is stale
	if err != nil {
		log.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair("/etc/mcpca/server.crt", "/etc/mcpca/server.key")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Addr:              ":8443",
		TLSConfig:         identity.ServerTLSConfig(identity.StaticCertificate{Cert: &cert}, v),
		ReadHeaderTimeout: 10 * time.Second, // no WriteTimeout: MCP answers may be long SSE streams
		IdleTimeout:       2 * time.Minute,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Per request: a cache hit, and a revoked or expired peer is refused.
			id, err := v.PeerIdentity(r.TLS)
			if err != nil {
				http.Error(w, "forbidden", http.StatusForbidden)
				return
			}
			fmt.Fprintf(w, "hello %s, roles %v\n", id.ID, id.Roles)
		}),
	}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}

// A client that only talks to one server identity: the expected SPIFFE ID
// replaces the check of the URL's host against the certificate.
func ExampleClientTLSConfig() {
	bundle, err := trust.LoadBundleFile("/etc/mcpca/roots.pem")
	if err != nil {
		log.Fatal(err)
	}
	v, err := identity.NewVerifier(trust.NewBundleStore(bundle), identity.WithTrustDomains("example.org"))
	if err != nil {
		log.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair("/etc/mcpca/client.crt", "/etc/mcpca/client.key")
	if err != nil {
		log.Fatal(err)
	}
	files, _ := identity.ParseID("spiffe://example.org/server/files")
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: identity.ClientTLSConfig(identity.StaticCertificate{Cert: &cert}, v,
			identity.WithServerID(files)),
	}}
	resp, err := client.Get("https://files.example.org:8443/mcp")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
}
