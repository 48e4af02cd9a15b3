// Command mcpca-example is a small MCP server protected by mcpca: every
// client must present a certificate of the CA, and a Cedar policy decides
// every tool call, resource read and prompt, with an audit line per
// decision.
//
//	mcpca-example --listen 127.0.0.1:8443 --cert server.crt --key server.key \
//	    --root root_ca.crt --policy scripts/policies/mcp-example.cedar \
//	    --audit audit.log --crl https://127.0.0.1:9443/crl
//
// The MCP endpoint is https://ADDR/mcp (Streamable HTTP), readiness is
// https://ADDR/healthz (also behind mTLS). SIGHUP reloads the policy, the
// certificate files, the trust bundle and the CRL at once; they are also
// polled. SIGINT or SIGTERM stop the server.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	flag "github.com/spf13/pflag"

	"github.com/mcpca/mcpca/identity/apikey"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/mcpstack"
	"github.com/mcpca/mcpca/internal/sighup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	helpOut = os.Stdout // --help is data: stdout, as mcpca's commands print it
	if err := run(ctx, os.Args[1:], os.Stderr, sighup.Notify(ctx)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // --help: the usage went to stdout; exit 0
		}
		fmt.Fprintln(os.Stderr, "mcpca-example:", err)
		os.Exit(1)
	}
}

type options struct {
	listen, cert, key, root, policy, audit, crl, trustDomain, caURL string
	resource                                                        string
	tokenIssuers, tokenScopes                                       []string
	requireBound                                                    bool
	apikeyRefresh                                                   time.Duration
	introspect, introspectID, introspectSecret                      string
	stateless                                                       bool
	poll, auditFlush                                                time.Duration
	readHeaderTimeout, idleTimeout                                  time.Duration
}

// helpOut is where --help prints the usage (main: stdout); nil means the
// log writer given to run.
var helpOut io.Writer

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	// pflag, as cobra in mcpca: --long flags, and --help is not an error.
	fs := flag.NewFlagSet("mcpca-example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := helpOut
		if w == nil {
			w = stderr
		}
		fmt.Fprintf(w, `mcpca-example is an MCP server protected by mcpca: clients present a
certificate of the CA, a Cedar policy decides every request.

Usage:
  mcpca-example --cert server.crt --key server.key --root root_ca.crt --policy FILE|DIR [flags]

Flags:
%s`, fs.FlagUsages())
	}
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8443", "address to serve on (port 0: any free port, logged at start)")
	fs.StringVar(&o.cert, "cert", "", "server certificate chain, PEM (required; re-read when it changes)")
	fs.StringVar(&o.key, "key", "", "server private key, PEM (required)")
	fs.StringVar(&o.root, "root", "", "CA root bundle that client certificates must chain to, PEM (required)")
	fs.StringVar(&o.policy, "policy", "", "Cedar policy file or directory (required; reloaded when it changes)")
	fs.StringVar(&o.audit, "audit", "", "append one hash-chained JSON line per decision to this file")
	fs.DurationVar(&o.auditFlush, "audit-flush", 0, "write audit lines in batches, at most this long after the first of a batch (0: each line before its request is handled; a crash loses up to this much)")
	fs.StringVar(&o.crl, "crl", "", "CRL URL (https://CA/crl) or file; without it revocation is not checked")
	fs.StringVar(&o.trustDomain, "trust-domain", "", "accept clients of this trust domain only (default: the server certificate's)")
	fs.StringVar(&o.caURL, "ca-url", "", "renew the server certificate in-process through this CA (agent Source), writing --cert and --key back; without it the files are watched for renewals made by mcpca agent or mcpca renew")
	fs.StringArrayVar(&o.tokenIssuers, "token-issuer", nil, "also accept OAuth access tokens (RFC 9068 JWTs, audience --resource) of this authorization server, URL or URL=TRUST-DOMAIN (repeatable); clients may then connect without a certificate, and get a 401 challenge pointing to the RFC 9728 metadata")
	fs.StringVar(&o.resource, "resource", "", "this server's OAuth resource identifier, the audience its tokens must name (default https://LISTEN/mcp, with the port it listens on)")
	fs.StringArrayVar(&o.tokenScopes, "token-scope", nil, "with --token-issuer: a scope every token must carry (repeatable); a token without it gets 403 insufficient_scope")
	fs.BoolVar(&o.requireBound, "require-bound-tokens", false, "with --token-issuer: accept only tokens bound to the client certificate presented (RFC 8705)")
	fs.DurationVar(&o.apikeyRefresh, "apikey-refresh", apikey.DefaultRefreshInterval, "with a --token-issuer that is an mcpca CA (its RFC 8414 metadata names mcpca_apikeys_uri): how often its signed API key set is fetched again; a revoked key is refused within this long")
	fs.StringVar(&o.introspect, "token-introspection", "", "with --token-issuer: also accept opaque (non-JWT) access tokens of this issuer (one of the --token-issuer URLs), asking its RFC 7662 introspection endpoint; an answer is believed until the token expires or for 1m, whichever is sooner")
	fs.StringVar(&o.introspectID, "introspection-client-id", "", "with --token-introspection: the client ID this server authenticates to the introspection endpoint with (client_secret_basic)")
	fs.StringVar(&o.introspectSecret, "introspection-secret-file", "", "with --token-introspection: a file holding that client's secret (one line, mode 0600)")
	fs.BoolVar(&o.stateless, "stateless", false, "serve MCP without sessions (no Mcp-Session-Id)")
	fs.DurationVar(&o.poll, "poll", 30*time.Second, "how often to check the certificate, root, policy and CRL for changes")
	fs.DurationVar(&o.readHeaderTimeout, "read-header-timeout", mcpauth.ReadHeaderTimeout, "close a connection whose request headers take longer than this")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", mcpauth.IdleTimeout, "close a keep-alive connection idle for this long (no write timeout: SSE streams live long)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, req := range []struct{ name, val string }{{"cert", o.cert}, {"key", o.key}, {"root", o.root}, {"policy", o.policy}} {
		if req.val == "" {
			return nil, fmt.Errorf("--%s is required (see --help)", req.name)
		}
	}
	if o.poll <= 0 {
		return nil, fmt.Errorf("--poll must be positive, got %v", o.poll)
	}
	if o.apikeyRefresh <= 0 {
		return nil, fmt.Errorf("--apikey-refresh must be positive, got %v", o.apikeyRefresh)
	}
	if o.introspect != "" && len(o.tokenIssuers) == 0 {
		return nil, fmt.Errorf("--token-introspection %s needs --token-issuer %[1]s", o.introspect)
	}
	if (o.resource != "" || o.requireBound || len(o.tokenScopes) > 0) && len(o.tokenIssuers) == 0 {
		return nil, fmt.Errorf("--resource, --token-scope and --require-bound-tokens need --token-issuer")
	}
	if o.auditFlush < 0 {
		return nil, fmt.Errorf("--audit-flush must not be negative, got %v", o.auditFlush)
	}
	if o.readHeaderTimeout <= 0 || o.idleTimeout <= 0 {
		return nil, fmt.Errorf("--read-header-timeout and --idle-timeout must be positive, got %v and %v", o.readHeaderTimeout, o.idleTimeout)
	}
	return o, nil
}

// run serves until ctx is done. Every receive on reload reloads the policy,
// the certificate, the trust bundle and the CRL.
func run(ctx context.Context, args []string, logw io.Writer, reload <-chan struct{}) error {
	o, err := parseFlags(args, logw)
	if err != nil {
		return err
	}
	issuers, topts, err := mcpstack.TokenFlags(o.tokenIssuers, o.requireBound, o.tokenScopes)
	if err != nil {
		return err
	}
	iopts, err := mcpstack.IntrospectionFlags(o.introspect, o.introspectID, o.introspectSecret, logw)
	if err != nil {
		return err
	}
	topts = append(topts, iopts...)
	log := slog.New(slog.NewJSONHandler(logw, nil))
	st, err := mcpstack.Open(ctx, mcpstack.Config{Name: "mcpca-example", Cert: o.cert, Key: o.key, Root: o.root,
		Policy: o.policy, Audit: o.audit, AuditFlush: o.auditFlush, CRL: o.crl, TrustDomain: o.trustDomain,
		CAURL: o.caURL, Poll: o.poll, Logger: log, TokenIssuers: issuers, Resource: o.resource, TokenOptions: topts,
		APIKeyRefresh: o.apikeyRefresh})
	if err != nil {
		return err
	}
	defer st.Close()

	mux := http.NewServeMux()
	mux.Handle("/mcp", st.Guard.MCPHandler(mcpexample.NewServer(),
		&mcp.StreamableHTTPOptions{Stateless: o.stateless, SessionTimeout: time.Hour}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		h := st.Health()
		h["server"] = h["identity"]
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h)
	})

	return st.Serve(ctx, mux, mcpstack.Serving{Addr: o.listen, ReadHeaderTimeout: o.readHeaderTimeout, IdleTimeout: o.idleTimeout,
		Drain: 5 * time.Second, MCPPath: "/mcp", LogAttrs: []any{"server", st.Self.ID.String(), "trust_domain", st.TrustDomain,
			"policy", o.policy, "crl", o.crl, "stateless", o.stateless}}, reload)
}
