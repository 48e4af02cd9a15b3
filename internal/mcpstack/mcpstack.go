// Package mcpstack is what every mTLS MCP endpoint fed by files needs, in
// one place: its own certificate (files watched, or renewed in process
// through the CA), the CA's bundle and CRL, a verifier, the Cedar policy,
// the audit log and the Guard, each kept fresh, all reloaded at once on
// SIGHUP. mcpca-example and mcpca gateway are built on it.
package mcpstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/apikey"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/secretfile"
)

// Config names the files of an endpoint.
type Config struct {
	Name        string // for the logs and the renewing source
	Cert, Key   string // the endpoint's own certificate chain and key, PEM
	Root        string // the CA bundle clients must chain to, PEM
	Policy      string // Cedar file or directory
	Audit       string // audit log file ("": none)
	AuditFlush  time.Duration
	CRL         string // CRL URL or file ("": revocation not checked)
	TrustDomain string // clients' trust domain ("": the certificate's)
	CAURL       string // renew Cert/Key in process through this CA ("": watch the files)
	Poll        time.Duration
	Logger      *slog.Logger
	// TokenIssuers are the authorization servers whose access tokens the
	// endpoint accepts besides certificates (none: mTLS only). Their TLS
	// certificates are verified against the system roots and Root.
	TokenIssuers []oauth.Issuer
	// Resource is the endpoint's resource identifier ("": https://ADDR
	// plus Serving.MCPPath, once listening).
	Resource string
	// TokenOptions configure the resource server.
	TokenOptions []oauth.Option
	// APIKeyRefresh is how often the signed API key set of a token issuer
	// that is an mcpca CA is fetched again (0: apikey.DefaultRefreshInterval):
	// a revoked key is refused within it.
	APIKeyRefresh time.Duration
}

// Stack is the loaded endpoint. Run keeps it fresh; Close releases it.
type Stack struct {
	Self        *identity.Identity
	TrustDomain string
	Verifier    *identity.Verifier
	Authz       *policy.Live
	Guard       *mcpauth.Guard
	CRL         *trust.CRLFetcher // nil without Config.CRL
	Tokens      *oauth.Resource   // nil without Config.TokenIssuers

	cfg      Config
	log      *slog.Logger
	files    *trust.FileCertificateSource
	bundle   *trust.FileBundleSource
	renewer  *agent.Source
	workload *agent.Workload
	audit    *audit.Log
	more     []*policy.Live     // other policies kept fresh with the rest (AddPolicy)
	keys     []*apikey.Verifier // the API key sets of the token issuers that are mcpca CAs
	issuers  []oauth.Issuer     // the token issuers as Tokens has them (trust domains of the CAs filled in)
	tokOpts  []oauth.Option     // Tokens' options, API key verifiers included (NewResource)
}

// Open loads everything Config names, failing on the first thing that
// cannot be loaded, with guardOpts for the Guard.
func Open(ctx context.Context, cfg Config, guardOpts ...mcpauth.Option) (_ *Stack, err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 30 * time.Second
	}
	s := &Stack{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.files, err = trust.NewFileCertificateSource(cfg.Cert, cfg.Key, trust.WithRefreshInterval(cfg.Poll), trust.WithLogger(log)); err != nil {
		return nil, err
	}
	if s.Self, err = identity.FromCertificate(s.files.Current().Leaf); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Cert, err)
	}
	s.TrustDomain = cfg.TrustDomain
	if s.TrustDomain == "" {
		s.TrustDomain = s.Self.ID.TrustDomain
	}
	if s.bundle, err = trust.NewFileBundleSource(cfg.Root, trust.WithRefreshInterval(cfg.Poll), trust.WithLogger(log)); err != nil {
		return nil, err
	}
	vopts := []identity.VerifyOption{identity.WithTrustDomains(s.TrustDomain), identity.WithLogger(log)}
	if cfg.CRL != "" {
		s.CRL, err = trust.NewCRLFetcher(cfg.CRL, trust.WithHTTPClient(trust.CAHTTPClient(s.bundle)),
			trust.WithRefreshInterval(cfg.Poll), trust.WithLogger(log))
		if err != nil {
			return nil, err
		}
		if err := s.CRL.Refresh(ctx); err != nil {
			return nil, fmt.Errorf("loading the CRL: %w", err)
		}
		vopts = append(vopts, identity.WithCRL(s.CRL))
	}
	if s.Verifier, err = identity.NewVerifier(s.bundle, vopts...); err != nil {
		return nil, err
	}
	if s.Authz, err = policy.New([]string{cfg.Policy}, policy.WithLogger(log), policy.WithPollInterval(cfg.Poll)); err != nil {
		return nil, err
	}
	gopts := append([]mcpauth.Option{mcpauth.WithLogger(log)}, guardOpts...)
	if len(cfg.TokenIssuers) > 0 {
		client, err := issuerClient(cfg.Root)
		if err != nil {
			return nil, err
		}
		issuers := slices.Clone(cfg.TokenIssuers)
		kopts, err := s.caAPIKeys(ctx, issuers, client)
		if err != nil {
			return nil, err
		}
		topts := append([]oauth.Option{oauth.WithLogger(log), oauth.WithHTTPClient(client)}, cfg.TokenOptions...)
		s.issuers, s.tokOpts = issuers, append(topts, kopts...)
		if s.Tokens, err = oauth.New(cfg.Resource, issuers, s.tokOpts...); err != nil {
			return nil, err
		}
		gopts = append(gopts, mcpauth.WithResourceServer(s.Tokens))
	}
	if cfg.Audit != "" {
		if s.audit, err = audit.Open(cfg.Audit, audit.WithFlushInterval(cfg.AuditFlush)); err != nil {
			return nil, err
		}
		gopts = append(gopts, mcpauth.WithAuditLog(s.audit))
	}
	if s.Guard, err = mcpauth.New(s.Verifier, s.Authz, gopts...); err != nil {
		return nil, err
	}
	if cfg.CAURL != "" {
		s.workload, err = agent.NewWorkload(ctx, cfg.CAURL, agent.WithRootFile(cfg.Root), agent.WithKeyPairFiles(cfg.Cert, cfg.Key),
			agent.WithSourceOptions(agent.WithLogger(log), agent.WithName(cfg.Name)))
		if err != nil {
			return nil, err
		}
		s.renewer = s.workload.Source()
	}
	return s, nil
}

// NewGuard loads another policy from paths and returns a Guard deciding
// with it, on the stack's verifier, audit log and resource server (opts,
// such as an audit log or resource server of its own, win); the policy is
// kept fresh and reloaded with the rest (Run, ReloadAll). For endpoints
// that serve several routes, each with its policy.
func (s *Stack) NewGuard(paths []string, opts ...mcpauth.Option) (*mcpauth.Guard, error) {
	live, err := policy.New(paths, policy.WithLogger(s.log), policy.WithPollInterval(s.cfg.Poll))
	if err != nil {
		return nil, err
	}
	gopts := []mcpauth.Option{mcpauth.WithLogger(s.log)}
	if s.Tokens != nil {
		gopts = append(gopts, mcpauth.WithResourceServer(s.Tokens))
	}
	if s.audit != nil {
		gopts = append(gopts, mcpauth.WithAuditLog(s.audit))
	}
	g, err := mcpauth.New(s.Verifier, live, append(gopts, opts...)...)
	if err != nil {
		return nil, err
	}
	s.more = append(s.more, live)
	return g, nil
}

// NewResource returns another OAuth resource server of the stack's token
// issuers, options and API key sets, for resource ("": set it with
// SetResource once listening), for a route with a resource identifier of
// its own. Nil without Config.TokenIssuers.
func (s *Stack) NewResource(resource string) (*oauth.Resource, error) {
	if s.Tokens == nil {
		return nil, nil
	}
	return oauth.New(resource, s.issuers, s.tokOpts...)
}

// Certificates is the endpoint's own certificate, as TLS presents it.
func (s *Stack) Certificates() identity.CertificateSource {
	if s.renewer != nil {
		return s.renewer
	}
	return s.files
}

// Current is the endpoint's current leaf certificate.
func (s *Stack) Current() *x509.Certificate {
	if s.renewer != nil {
		return s.renewer.Current().Leaf()
	}
	return s.files.Current().Leaf
}

// Run keeps everything fresh until ctx is done: the files, the bundle,
// the policy, the CRL and the CA's API key set are polled, and each value from reload (SIGHUP)
// reloads them all at once (and renews now, when renewing in process),
// logging one line that says what happened.
func (s *Stack) Run(ctx context.Context, reload <-chan struct{}) {
	if s.renewer == nil { // the workload runs its own renewal
		go func() { _ = s.files.Run(ctx) }()
	}
	go func() { _ = s.bundle.Run(ctx) }()
	go func() { _ = s.Authz.Watch(ctx) }()
	for _, p := range s.more {
		go func() { _ = p.Watch(ctx) }()
	}
	if s.CRL != nil {
		go func() { _ = s.CRL.Run(ctx) }()
	}
	for _, v := range s.keys {
		go func() { _ = v.Run(ctx) }()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			if s.renewer != nil {
				s.renewer.RenewNow()
			}
			s.ReloadAll(ctx)
		}
	}
}

// ReloadAll reloads everything at once and logs one line ("reloaded", or
// "reloaded with errors"), so scripts can wait for it.
func (s *Stack) ReloadAll(ctx context.Context) {
	var errs []error
	if _, err := s.files.Reload(); err != nil {
		errs = append(errs, err)
	}
	if err := s.bundle.Reload(); err != nil {
		errs = append(errs, err)
	}
	if err := s.Authz.Reload(); err != nil {
		errs = append(errs, err)
	}
	for _, p := range s.more {
		if err := p.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, v := range s.keys {
		if err := v.Refresh(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	attrs := []any{"policy_generation", s.Authz.Generation()}
	if s.CRL != nil {
		if err := s.CRL.Refresh(ctx); err != nil {
			errs = append(errs, err)
		} else if c, err := s.CRL.CRL(); err == nil {
			attrs = append(attrs, "crl_number", c.Number().String(), "crl_revoked", c.Len())
		}
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Warn("reloaded with errors (the previous state stays where a reload failed)", append(attrs, "error", err.Error())...)
		return
	}
	s.log.Info("reloaded", attrs...)
}

// Health is the endpoint's health document (/healthz).
func (s *Stack) Health() map[string]any {
	h := map[string]any{
		"status":            "ok",
		"identity":          s.Self.ID.String(),
		"certificate_until": s.Current().NotAfter.UTC().Format(time.RFC3339),
		"policy_generation": s.Authz.Generation(),
	}
	if s.CRL != nil {
		if c, err := s.CRL.CRL(); err == nil {
			h["crl_number"] = c.Number().String()
			h["crl_revoked"] = c.Len()
		}
	}
	return h
}

// Close stops renewing and writes what the audit log holds.
func (s *Stack) Close() {
	if s.workload != nil {
		s.workload.Close()
	}
	if s.audit != nil {
		_ = s.audit.Close()
	}
}

// Serving is how Serve serves.
type Serving struct {
	Addr                           string        // to listen on ("127.0.0.1:0": any free port)
	ReadHeaderTimeout, IdleTimeout time.Duration // of the http.Server
	Drain                          time.Duration // how long open requests may finish at shutdown
	// LogAttrs are added to the "serving" line, after addr and mcp.
	LogAttrs []any
	MCPPath  string // for the "mcp" URL of the "serving" line
	// OnListen, when set, runs once listening, with the address, before
	// anything is served (an error stops Serve).
	OnListen func(addr string) error
}

// Serve serves h over mTLS (the stack's certificate, every client verified
// by its verifier, the Guard's connection cache) on cfg.Addr, keeps the
// stack fresh (Run, with reload), logs "serving" once listening, and when
// ctx is done drains for cfg.Drain (then cuts what is left, logging
// "drain timed out: closing the streams still open") and logs "stopped".
func (s *Stack) Serve(ctx context.Context, h http.Handler, cfg Serving, reload <-chan struct{}) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	if cfg.OnListen != nil {
		if err := cfg.OnListen(addr); err != nil {
			_ = ln.Close()
			return err
		}
	}
	if s.Tokens != nil {
		if s.Tokens.ResourceURL() == "" {
			if err := s.Tokens.SetResource("https://" + addr + cfg.MCPPath); err != nil {
				_ = ln.Close()
				return err
			}
		}
		mux := http.NewServeMux()
		for _, p := range s.Tokens.MetadataPaths() {
			mux.Handle(p, s.Tokens.MetadataHandler())
		}
		mux.Handle("/", h)
		h = mux
	}
	hs := &http.Server{
		Handler:           h,
		TLSConfig:         s.Guard.TLSConfig(s.Certificates()),
		ConnContext:       s.Guard.ConnContext,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.Run(ctx, reload)
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	attrs := []any{"addr", addr, "mcp", "https://" + addr + cfg.MCPPath}
	if s.Tokens != nil {
		attrs = append(attrs, "resource", s.Tokens.ResourceURL(), "token_issuers", s.Tokens.Issuers())
	}
	s.log.Info("serving", append(attrs, cfg.LogAttrs...)...)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), cfg.Drain)
	defer scancel()
	if err := hs.Shutdown(sctx); errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("drain timed out: closing the streams still open", "drain_timeout", cfg.Drain.String())
		_ = hs.Close()
	}
	s.log.Info("stopped")
	return nil
}

// issuerClient is the HTTP client that fetches the token issuers'
// metadata and keys: TLS verified against the system roots and the CA
// bundle at root (an issuer may hold a certificate of the CA).
func issuerClient(root string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(root)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", root)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, nil
}

// TokenFlags parses the --token-issuer values (URL or URL=TRUST-DOMAIN),
// --require-bound-tokens and --token-scope of a command.
func TokenFlags(issuers []string, requireBound bool, scopes []string) ([]oauth.Issuer, []oauth.Option, error) {
	var out []oauth.Issuer
	for _, s := range issuers {
		is, err := oauth.ParseIssuer(s)
		if err != nil {
			return nil, nil, fmt.Errorf("--token-issuer: %w", err)
		}
		out = append(out, is)
	}
	var opts []oauth.Option
	if requireBound {
		opts = append(opts, oauth.WithRequireBoundTokens())
	}
	for _, sc := range scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\"\\") {
			return nil, nil, fmt.Errorf("--token-scope %q: a scope is one word", sc)
		}
	}
	if len(scopes) > 0 {
		opts = append(opts, oauth.WithRequiredScopes(scopes...))
	}
	return out, opts, nil
}

// IntrospectionFlags parses --token-introspection ISSUER,
// --introspection-client-id and --introspection-secret-file: opaque
// (non-JWT) access tokens of ISSUER, one of the --token-issuer values, are
// then introspected at its introspection_endpoint (RFC 7662, found in its
// metadata) as that client (client_secret_basic), an answer believed until
// the token's exp or for oauth.DefaultIntrospectionCache, whichever is
// sooner. The secret file must hold one line; a file others can read is
// warned about on warn.
func IntrospectionFlags(issuer, clientID, secretFile string, warn io.Writer) ([]oauth.Option, error) {
	switch {
	case issuer == "" && (clientID != "" || secretFile != ""):
		return nil, errors.New("--introspection-client-id and --introspection-secret-file need --token-introspection")
	case issuer == "":
		return nil, nil
	case clientID == "" || secretFile == "":
		return nil, errors.New("--token-introspection needs --introspection-client-id and --introspection-secret-file (RFC 7662: the resource server authenticates to the introspection endpoint)")
	}
	b, err := secretfile.Read(secretFile, warn)
	if err != nil {
		return nil, fmt.Errorf("--introspection-secret-file: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" || strings.ContainsAny(secret, "\r\n") {
		return nil, fmt.Errorf("--introspection-secret-file %s: want the client secret on one line", secretFile)
	}
	return []oauth.Option{oauth.WithIntrospection(issuer, clientID, secret, 0)}, nil
}
