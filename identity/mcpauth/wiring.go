package mcpauth

import (
	"crypto/tls"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/oauth"
)

// Timeouts of the http.Server that Server returns. No read or write
// timeout: an MCP response may be a long-lived SSE stream.
const (
	ReadHeaderTimeout = 10 * time.Second
	IdleTimeout       = 2 * time.Minute
)

// MCPHandler installs g on server and returns the Streamable HTTP handler
// for it, wrapped with g.Handler: the two halves of the Guard in one call,
// so neither can be left out. Wire g.ConnContext into the http.Server too,
// or use Server, which does everything.
func (g *Guard) MCPHandler(server *mcp.Server, opts *mcp.StreamableHTTPOptions) http.Handler {
	g.Install(server)
	return g.Handler(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, opts))
}

// Server returns an http.Server serving server's MCP endpoint at path
// (e.g. "/mcp") on addr with everything the Guard needs: its middleware
// installed on server, its Handler, the mTLS configuration (certs
// presented, every client verified by the Guard's Verifier), its
// ConnContext, and header and idle timeouts (ReadHeaderTimeout,
// IdleTimeout). Serve it with ListenAndServeTLS("", "") or
// ServeTLS(listener, "", "").
//
// With WithResourceServer it also serves the RFC 9728 metadata at its
// well-known paths, and TLS requests a client certificate instead of
// requiring one (see TLSConfig).
func (g *Guard) Server(addr, path string, server *mcp.Server, certs identity.CertificateSource, opts *mcp.StreamableHTTPOptions) *http.Server {
	mux := http.NewServeMux()
	mux.Handle(path, g.MCPHandler(server, opts))
	if rs := g.cfg.tokens; rs != nil {
		for _, p := range rs.MetadataPaths() {
			mux.Handle(p, rs.MetadataHandler())
		}
	}
	return &http.Server{
		Addr:              addr,
		Handler:           mux,
		TLSConfig:         g.TLSConfig(certs),
		ConnContext:       g.ConnContext,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    1 << 20,
	}
}

// TLSConfig returns the server TLS configuration for the Guard: certs
// presented, client certificates verified with the Guard's Verifier on
// every handshake. A Guard that only takes certificates requires one; with
// WithResourceServer, a client certificate is requested, not required, so
// that clients with only a token connect (a certificate that is presented
// must still verify).
func (g *Guard) TLSConfig(certs identity.CertificateSource) *tls.Config {
	if g.cfg.tokens != nil {
		return identity.ServerTLSConfig(certs, g.v, identity.WithOptionalClientCertificate())
	}
	return identity.ServerTLSConfig(certs, g.v)
}

// ResourceServer returns the Guard's resource server (WithResourceServer),
// or nil.
func (g *Guard) ResourceServer() *oauth.Resource { return g.cfg.tokens }
