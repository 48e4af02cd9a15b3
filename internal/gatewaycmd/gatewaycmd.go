// Package gatewaycmd is the `gateway` command, shared by mcpca and
// mcpca-gateway (which links no CA code).
package gatewaycmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/apikey"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/gateway"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/internal/mcpstack"
	"github.com/mcpca/mcpca/internal/sighup"
)

type options struct {
	config, listen, path, cert, key, root, policy, audit, crl, trustDomain, caURL, upstream, upstreamCmd, upstreamID string
	maxProcs                                                                                                         int
	procIdle                                                                                                         time.Duration
	upstreamMTLS, noAssert, requireBound                                                                             bool
	apikeyRefresh                                                                                                    time.Duration
	introspect, introspectID, introspectSecret                                                                       string
	resource                                                                                                         string
	tokenIssuers, tokenScopes                                                                                        []string
	upstreamArgs                                                                                                     []string
	auditFlush, poll, upstreamTimeout, drain, readHeaderTimeout, idleTimeout                                         time.Duration
	maxBody, memLimit                                                                                                int64
	maxPerIdentity, maxProcsPerID, maxStreams, streamBytes                                                           int
}

// New returns the gateway command.
func New() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "gateway --cert CRT --key KEY --root ROOT --policy FILE|DIR (--upstream URL | --upstream-cmd CMD) [flags]",
		Short: "Serve an MCP server of any language behind mcpca's mTLS, policies and audit",
		Long: `gateway is an MCP-aware reverse proxy. Clients connect over mTLS with a
certificate of the CA (verified on every request: expiry, revocation with
--crl, trust domain); every JSON-RPC request is decided by the Cedar policy,
with the same decisions, list filtering and audit log as an in-process mcpca
server; what passes is forwarded to the upstream MCP server (Streamable
HTTP at --upstream, or a command speaking MCP on stdio, one process per
session, with --upstream-cmd) as it came, and an HTTP upstream learns who
called from a signed Mcpca-Caller header. MCP is served at https://LISTEN/PATH, with /healthz
and /metrics (Prometheus) beside it. SIGHUP reloads the certificate,
bundle, policy and CRL; SIGTERM drains open streams for --drain-timeout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return Run(ctx, o, cmd.ErrOrStderr(), sighup.Notify(ctx))
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8443", "address to serve on (port 0: any free port, logged at start)")
	f.StringVar(&o.path, "path", "/mcp", "path of the MCP endpoint")
	f.StringVar(&o.cert, "cert", "", "the gateway's certificate chain, PEM (re-read when it changes)")
	f.StringVar(&o.key, "key", "", "the gateway's private key, PEM")
	f.StringVar(&o.root, "root", "", "CA root bundle that client certificates must chain to, PEM")
	f.StringVar(&o.policy, "policy", "", "Cedar policy file or directory (reloaded when it changes)")
	f.StringVar(&o.audit, "audit", "", "append one hash-chained JSON line per decision to this file")
	f.DurationVar(&o.auditFlush, "audit-flush", 0, "write audit lines in batches, at most this long after the first of a batch (0: each line before its request goes on)")
	f.StringVar(&o.crl, "crl", "", "CRL URL (https://CA/crl) or file; without it revocation is not checked")
	f.StringVar(&o.trustDomain, "trust-domain", "", "accept clients of this trust domain only (default: the gateway certificate's)")
	f.StringVar(&o.caURL, "ca-url", "", "renew the gateway's certificate in-process through this CA, writing --cert and --key back (default: watch the files)")
	f.StringVar(&o.config, "config", "", "a YAML file of several routes, each a path, an upstream (or upstream_cmd) and a policy, optionally its own audit log (audit:) and OAuth resource (resource:), instead of --path, --upstream(-cmd) and --policy")
	f.StringVar(&o.upstream, "upstream", "", "the upstream MCP endpoint, http://HOST:PORT/PATH (loopback) or https://...")
	f.StringVar(&o.upstreamCmd, "upstream-cmd", "", `an upstream MCP server to run over stdio, one process per session, e.g. "node server.js stdio" (split into words as a shell would, with its quotes and backslashes, but run without one: nothing is expanded)`)
	f.StringArrayVar(&o.upstreamArgs, "upstream-arg", nil, "with --upstream-cmd: one more argument for the command, passed as it is (repeatable)")
	f.IntVar(&o.maxProcs, "max-processes", gateway.DefaultMaxStdioProcesses, "with --upstream-cmd: processes running at once (the least recently used idle one makes way)")
	f.IntVar(&o.maxProcsPerID, "max-processes-per-caller", gateway.DefaultMaxStdioPerCaller, "with --upstream-cmd: processes one identity may hold (its own least recently used idle one makes way)")
	f.IntVar(&o.streamBytes, "max-stream-bytes", gateway.DefaultMaxStreamBytes, "with --upstream-cmd: bytes of a process's messages that may wait for one client stream to read them; beyond, the process waits up to 10s, then the stream is closed with an error")
	f.DurationVar(&o.procIdle, "process-idle", gateway.DefaultStdioIdle, "with --upstream-cmd: stop a session's process after it has been idle this long")
	f.BoolVar(&o.upstreamMTLS, "upstream-mtls", false, "present the gateway's certificate to an https upstream and verify it against --root (its DNS/IP names must hold the --upstream host)")
	f.StringVar(&o.upstreamID, "upstream-id", "", "with --upstream-mtls: the upstream's SPIFFE ID, checked instead of its host name")
	f.StringArrayVar(&o.tokenIssuers, "token-issuer", nil, "also accept OAuth access tokens (RFC 9068 JWTs, audience --resource) of this authorization server, URL or URL=TRUST-DOMAIN (repeatable); clients may then connect without a certificate, and get a 401 challenge pointing to the RFC 9728 metadata; tokens are never passed to the upstream")
	f.StringVar(&o.resource, "resource", "", "the gateway's OAuth resource identifier, the audience its tokens must name (default https://LISTEN/PATH, with the port it listens on, PATH the first route's)")
	f.StringArrayVar(&o.tokenScopes, "token-scope", nil, "with --token-issuer: a scope every token must carry (repeatable); a token without it gets 403 insufficient_scope")
	f.BoolVar(&o.requireBound, "require-bound-tokens", false, "with --token-issuer: accept only tokens bound to the client certificate presented (RFC 8705)")
	f.DurationVar(&o.apikeyRefresh, "apikey-refresh", apikey.DefaultRefreshInterval, "with a --token-issuer that is an mcpca CA (its RFC 8414 metadata names mcpca_apikeys_uri): how often its signed API key set is fetched again; a revoked key is refused within this long")
	f.StringVar(&o.introspect, "token-introspection", "", "with --token-issuer: also accept opaque (non-JWT) access tokens of this issuer (one of the --token-issuer URLs), asking its RFC 7662 introspection endpoint; an answer is believed until the token expires or for 1m, whichever is sooner")
	f.StringVar(&o.introspectID, "introspection-client-id", "", "with --token-introspection: the client ID this server authenticates to the introspection endpoint with (client_secret_basic)")
	f.StringVar(&o.introspectSecret, "introspection-secret-file", "", "with --token-introspection: a file holding that client's secret (one line, mode 0600)")
	f.BoolVar(&o.noAssert, "no-caller-assertion", false, "do not send the signed Mcpca-Caller header to the upstream")
	f.DurationVar(&o.upstreamTimeout, "upstream-timeout", gateway.DefaultUpstreamTimeout, "how long the upstream may take to start answering a request")
	f.Int64Var(&o.maxBody, "max-body", gateway.DefaultMaxBodyBytes, "largest request body accepted, in bytes")
	f.Int64Var(&o.memLimit, "memory-limit", 64<<20, "soft memory limit of the Go runtime, in bytes (GOMEMLIMIT wins when set; 0: none): the collector works harder near it instead of letting idle connections' garbage grow")
	f.IntVar(&o.maxPerIdentity, "max-per-identity", gateway.DefaultMaxPerIdentity, "requests one identity may have in flight at once")
	f.IntVar(&o.maxStreams, "max-streams-per-identity", gateway.DefaultMaxStreamsPerIdentity, "standalone (GET) streams one identity may hold open at once")
	f.DurationVar(&o.poll, "poll", 30*time.Second, "how often to check the certificate, root, policy and CRL for changes")
	f.DurationVar(&o.drain, "drain-timeout", 10*time.Second, "on shutdown, how long open requests and streams may take to finish")
	f.DurationVar(&o.readHeaderTimeout, "read-header-timeout", mcpauth.ReadHeaderTimeout, "close a connection whose request headers take longer than this")
	f.DurationVar(&o.idleTimeout, "idle-timeout", mcpauth.IdleTimeout, "close a keep-alive connection idle for this long")
	for _, name := range []string{"cert", "key", "root"} {
		_ = cmd.MarkFlagRequired(name)
	}
	cmd.MarkFlagsOneRequired("upstream", "upstream-cmd", "config")
	cmd.MarkFlagsMutuallyExclusive("upstream", "upstream-cmd", "config")
	cmd.MarkFlagsMutuallyExclusive("config", "policy")
	cmd.MarkFlagsMutuallyExclusive("config", "path")
	return cmd
}

func (o *options) check() error {
	switch {
	case o.config == "" && o.policy == "":
		return errors.New("--policy is required (or --config with a policy per route)")
	case !strings.HasPrefix(o.path, "/"):
		return fmt.Errorf("--path %q must start with /", o.path)
	case o.poll <= 0:
		return fmt.Errorf("--poll must be positive, got %v", o.poll)
	case o.drain < 0 || o.auditFlush < 0:
		return fmt.Errorf("--drain-timeout and --audit-flush must not be negative")
	case o.readHeaderTimeout <= 0 || o.idleTimeout <= 0:
		return fmt.Errorf("--read-header-timeout and --idle-timeout must be positive")
	case o.apikeyRefresh <= 0:
		return fmt.Errorf("--apikey-refresh must be positive, got %v", o.apikeyRefresh)
	case o.introspect != "" && len(o.tokenIssuers) == 0:
		return fmt.Errorf("--token-introspection %s needs --token-issuer %[1]s", o.introspect)
	case (o.resource != "" || o.requireBound || len(o.tokenScopes) > 0) && len(o.tokenIssuers) == 0:
		return fmt.Errorf("--resource, --token-scope and --require-bound-tokens need --token-issuer")
	case len(o.upstreamArgs) > 0 && o.upstreamCmd == "":
		return errors.New("--upstream-arg needs --upstream-cmd (the program whose argument it is)")
	}
	return nil
}

// Run serves the gateway until ctx is done, logging JSON to logw.
func Run(ctx context.Context, o *options, logw io.Writer, reload <-chan struct{}) error {
	if err := o.check(); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(logw, nil))
	if o.memLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(o.memLimit)
	}
	routes := []route{{Path: o.path, Upstream: o.upstream, Policy: o.policy, UpstreamMTLS: o.upstreamMTLS, UpstreamID: o.upstreamID}}
	if o.upstreamCmd != "" {
		argv, err := splitCommand(o.upstreamCmd)
		if err != nil {
			return fmt.Errorf("--upstream-cmd: %w", err)
		}
		routes[0].Upstream, routes[0].UpstreamCmd = "", append(argv, o.upstreamArgs...)
	}
	if o.config != "" {
		var err error
		if routes, err = loadRoutes(o.config); err != nil {
			return err
		}
	}
	for i, r := range routes {
		if r.Resource != "" && len(o.tokenIssuers) == 0 {
			return fmt.Errorf("--config %s: route %d: resource needs --token-issuer (the authorization servers whose tokens name it)", o.config, i+1)
		}
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
	resource := o.resource
	if routes[0].Resource != "" {
		resource = routes[0].Resource
	}
	st, err := mcpstack.Open(ctx, mcpstack.Config{Name: "mcpca-gateway", Cert: o.cert, Key: o.key, Root: o.root,
		Policy: routes[0].Policy, Audit: o.audit, AuditFlush: o.auditFlush, CRL: o.crl, TrustDomain: o.trustDomain,
		CAURL: o.caURL, Poll: o.poll, Logger: log, TokenIssuers: issuers, Resource: resource, TokenOptions: topts,
		APIKeyRefresh: o.apikeyRefresh})
	if err != nil {
		return err
	}
	defer st.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := gateway.NewMetrics(reg)
	mux := http.NewServeMux()
	upstreams := map[string]string{}
	own := &routeState{audits: map[string]*audit.Log{}, metadata: map[string]string{}}
	defer own.close()
	if st.Tokens != nil {
		// The first route's resource is the stack's: its metadata is
		// served by Serve.
		own.metadata[oauth.WellKnownPath] = routes[0].Path
		own.metadata[metadataPath(resource, routes[0].Path)] = routes[0].Path
	}
	for i, r := range routes {
		extra, err := o.routeOptions(st, own, r, i == 0)
		if err != nil {
			return fmt.Errorf("route %s: %w", r.Path, err)
		}
		gw, closeUp, err := o.newRoute(st, r, r.Policy == routes[0].Policy && len(extra) == 0, extra, metrics, log)
		if err != nil {
			return fmt.Errorf("route %s: %w", r.Path, err)
		}
		defer closeUp()
		mux.Handle(r.Path, gw)
		upstreams[r.Path] = gw.Upstream()
	}
	for p, h := range own.handlers {
		mux.Handle(p, h)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		h := st.Health()
		h["upstreams"] = upstreams
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h)
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return st.Serve(ctx, mux, mcpstack.Serving{Addr: o.listen, ReadHeaderTimeout: o.readHeaderTimeout, IdleTimeout: o.idleTimeout,
		Drain: o.drain, MCPPath: routes[0].Path, OnListen: own.listening, LogAttrs: []any{"gateway", st.Self.ID.String(), "trust_domain", st.TrustDomain,
			"upstream", upstreams[routes[0].Path], "routes", upstreams, "crl", o.crl}}, reload)
}

// routeState is what the routes hold of their own beyond the stack's:
// audit logs (one per file, however many routes name it), resource
// servers (with their metadata paths, and those whose identifier waits for
// the address listened on).
type routeState struct {
	audits   map[string]*audit.Log // by absolute path
	metadata map[string]string     // metadata path -> the route that serves it
	handlers map[string]http.Handler
	pending  []func(addr string) error
}

func (rs *routeState) close() {
	for _, l := range rs.audits {
		_ = l.Close()
	}
}

func (rs *routeState) listening(addr string) error {
	for _, f := range rs.pending {
		if err := f(addr); err != nil {
			return err
		}
	}
	return nil
}

// metadataPath is where RFC 9728 puts the metadata of resource (the
// default, https://LISTEN/PATH, when resource is "").
func metadataPath(resource, path string) string {
	if resource != "" {
		if u, err := url.Parse(resource); err == nil {
			path = u.Path
		}
	}
	return oauth.WellKnownPath + strings.TrimSuffix(path, "/")
}

// routeOptions are the Guard options of route r beyond the stack's: its
// own audit log (audit:, when not --audit's file), and, for a route but
// the first when tokens are accepted, a resource server of its own
// (resource:, default https://LISTEN/PATH with the route's path), its
// metadata served at its own path.
func (o *options) routeOptions(st *mcpstack.Stack, own *routeState, r route, first bool) ([]mcpauth.Option, error) {
	var opts []mcpauth.Option
	if r.Audit != "" {
		path, err := filepath.Abs(r.Audit)
		if err != nil {
			return nil, err
		}
		stack := ""
		if o.audit != "" {
			if stack, err = filepath.Abs(o.audit); err != nil {
				return nil, err
			}
		}
		if path != stack {
			l := own.audits[path]
			if l == nil {
				if l, err = audit.Open(path, audit.WithFlushInterval(o.auditFlush)); err != nil {
					return nil, err
				}
				own.audits[path] = l
			}
			opts = append(opts, mcpauth.WithAuditLog(l))
		}
	}
	if st.Tokens == nil || first {
		return opts, nil
	}
	rs, err := st.NewResource(r.Resource)
	if err != nil {
		return nil, err
	}
	mp := metadataPath(r.Resource, r.Path)
	if other, ok := own.metadata[mp]; ok {
		return nil, fmt.Errorf("its resource's metadata path %s is route %s's: give each route a resource of its own path", mp, other)
	}
	own.metadata[mp] = r.Path
	if own.handlers == nil {
		own.handlers = map[string]http.Handler{}
	}
	own.handlers[mp] = rs.MetadataHandler()
	if r.Resource == "" {
		path := r.Path
		own.pending = append(own.pending, func(addr string) error { return rs.SetResource("https://" + addr + path) })
	}
	return append(opts, mcpauth.WithResourceServer(rs)), nil
}

// newRoute builds the gateway of one route, with a Guard of its own
// policy and extra options (the stack's own Guard for a route that shares
// the stack's policy and has no options of its own), and what to close
// when the gateway stops.
func (o *options) newRoute(st *mcpstack.Stack, r route, stackGuard bool, extra []mcpauth.Option, metrics *gateway.Metrics, log *slog.Logger) (*gateway.Gateway, func(), error) {
	guard := st.Guard
	if !stackGuard {
		g, err := st.NewGuard([]string{r.Policy}, extra...)
		if err != nil {
			return nil, nil, err
		}
		guard = g
	}
	limit := o.maxPerIdentity
	if r.MaxPerIdentity > 0 {
		limit = r.MaxPerIdentity
	}
	gopts := []gateway.Option{gateway.WithLogger(log), gateway.WithMetrics(metrics),
		gateway.WithUpstreamTimeout(o.upstreamTimeout), gateway.WithMaxBodyBytes(o.maxBody), gateway.WithMaxPerIdentity(limit), gateway.WithMaxStreamsPerIdentity(o.maxStreams)}
	if !o.noAssert && len(r.UpstreamCmd) == 0 { // a stdio process reads no headers
		gopts = append(gopts, gateway.WithCallerAssertion(st.Certificates()))
	}
	if r.UpstreamMTLS {
		u, err := url.Parse(r.Upstream)
		if err != nil || u.Scheme != "https" {
			return nil, nil, fmt.Errorf("mTLS to the upstream needs an https:// upstream, got %q", r.Upstream)
		}
		check := identity.WithServerName(u.Hostname())
		if r.UpstreamID != "" {
			id, err := identity.ParseID(r.UpstreamID)
			if err != nil {
				return nil, nil, fmt.Errorf("the upstream's ID: %w", err)
			}
			check = identity.WithServerID(id)
		}
		gopts = append(gopts, gateway.WithUpstreamTLS(identity.ClientTLSConfig(st.Certificates(), st.Verifier, check)))
	}
	target, closeUp := r.Upstream, func() {}
	if len(r.UpstreamCmd) > 0 {
		up, err := gateway.NewStdio(r.UpstreamCmd, gateway.WithMaxProcesses(o.maxProcs), gateway.WithMaxProcessesPerCaller(o.maxProcsPerID),
			gateway.WithIdleTimeout(o.procIdle), gateway.WithMaxStreamBytes(o.streamBytes), gateway.WithStdioLogger(log))
		if err != nil {
			return nil, nil, err
		}
		target, closeUp = up.URL(), func() { _ = up.Close() }
		gopts = append(gopts, gateway.WithHTTPClient(&http.Client{Transport: up}))
	}
	gw, err := gateway.New(guard, target, gopts...)
	if err != nil {
		closeUp()
		return nil, nil, err
	}
	return gw, closeUp, nil
}
