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
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	flag "github.com/spf13/pflag"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/mcpexample"
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
	log := slog.New(slog.NewJSONHandler(logw, nil))

	certs, err := trust.NewFileCertificateSource(o.cert, o.key, trust.WithRefreshInterval(o.poll), trust.WithLogger(log))
	if err != nil {
		return err
	}
	self, err := identity.FromCertificate(certs.Current().Leaf)
	if err != nil {
		return fmt.Errorf("%s: %w", o.cert, err)
	}
	td := o.trustDomain
	if td == "" {
		td = self.ID.TrustDomain
	}
	bundle, err := trust.NewFileBundleSource(o.root, trust.WithRefreshInterval(o.poll), trust.WithLogger(log))
	if err != nil {
		return err
	}
	vopts := []identity.VerifyOption{identity.WithTrustDomains(td), identity.WithLogger(log)}
	var crl *trust.CRLFetcher
	if o.crl != "" {
		crl, err = trust.NewCRLFetcher(o.crl, trust.WithHTTPClient(trust.CAHTTPClient(bundle)),
			trust.WithRefreshInterval(o.poll), trust.WithLogger(log))
		if err != nil {
			return err
		}
		if err := crl.Refresh(ctx); err != nil {
			return fmt.Errorf("loading the CRL: %w", err)
		}
		vopts = append(vopts, identity.WithCRL(crl))
	}
	v, err := identity.NewVerifier(bundle, vopts...)
	if err != nil {
		return err
	}
	authz, err := policy.New([]string{o.policy}, policy.WithLogger(log), policy.WithPollInterval(o.poll))
	if err != nil {
		return err
	}
	gopts := []mcpauth.Option{mcpauth.WithLogger(log)}
	if o.audit != "" {
		audit, err := audit.Open(o.audit, audit.WithFlushInterval(o.auditFlush))
		if err != nil {
			return err
		}
		defer audit.Close()
		gopts = append(gopts, mcpauth.WithAuditLog(audit))
	}
	guard, err := mcpauth.New(v, authz, gopts...)
	if err != nil {
		return err
	}

	// The certificate: from the files, re-read when they change, or renewed
	// in-process (agent.NewWorkload: it starts from the files, renews
	// through the CA and writes them back).
	var serving identity.CertificateSource = certs
	current := func() *x509.Certificate { return certs.Current().Leaf }
	var renewer *agent.Source
	if o.caURL != "" {
		w, err := agent.NewWorkload(ctx, o.caURL, agent.WithRootFile(o.root), agent.WithKeyPairFiles(o.cert, o.key),
			agent.WithSourceOptions(agent.WithLogger(log), agent.WithName("mcpca-example")))
		if err != nil {
			return err
		}
		defer w.Close()
		renewer = w.Source()
		serving = renewer
		current = func() *x509.Certificate { return renewer.Current().Leaf() }
	}

	mux := http.NewServeMux()
	mux.Handle("/mcp", guard.MCPHandler(mcpexample.NewServer(),
		&mcp.StreamableHTTPOptions{Stateless: o.stateless, SessionTimeout: time.Hour}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		leaf := current()
		h := map[string]any{
			"status":            "ok",
			"server":            self.ID.String(),
			"certificate_until": leaf.NotAfter.UTC().Format(time.RFC3339),
			"policy_generation": authz.Generation(),
		}
		if crl != nil {
			if c, err := crl.CRL(); err == nil {
				h["crl_number"] = c.Number().String()
				h["crl_revoked"] = c.Len()
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(h)
	})

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           mux,
		TLSConfig:         identity.ServerTLSConfig(serving, v),
		ConnContext:       guard.ConnContext,
		ReadHeaderTimeout: o.readHeaderTimeout,
		IdleTimeout:       o.idleTimeout,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if renewer == nil { // the workload runs its own renewal
		go func() { _ = certs.Run(ctx) }()
	}
	go func() { _ = bundle.Run(ctx) }()
	go func() { _ = authz.Watch(ctx) }()
	if crl != nil {
		go func() { _ = crl.Run(ctx) }()
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-reload:
				if renewer != nil {
					renewer.RenewNow()
				}
				reloadAll(ctx, log, certs, bundle, authz, crl)
			}
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	log.Info("serving", "addr", ln.Addr().String(), "mcp", "https://"+ln.Addr().String()+"/mcp",
		"server", self.ID.String(), "trust_domain", td, "policy", o.policy, "crl", o.crl, "stateless", o.stateless)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = hs.Shutdown(sctx)
	log.Info("stopped")
	return nil
}

// reloadAll reloads everything at once (SIGHUP) and logs one line saying
// what happened, so scripts can wait for it.
func reloadAll(ctx context.Context, log *slog.Logger, certs *trust.FileCertificateSource, bundle *trust.FileBundleSource, authz *policy.Authorizer, crl *trust.CRLFetcher) {
	var errs []error
	if _, err := certs.Reload(); err != nil {
		errs = append(errs, err)
	}
	if err := bundle.Reload(); err != nil {
		errs = append(errs, err)
	}
	if err := authz.Reload(); err != nil {
		errs = append(errs, err)
	}
	attrs := []any{"policy_generation", authz.Generation()}
	if crl != nil {
		if err := crl.Refresh(ctx); err != nil {
			errs = append(errs, err)
		} else if c, err := crl.CRL(); err == nil {
			attrs = append(attrs, "crl_number", c.Number().String(), "crl_revoked", c.Len())
		}
	}
	if err := errors.Join(errs...); err != nil {
		log.Warn("reloaded with errors (the previous state stays where a reload failed)", append(attrs, "error", err.Error())...)
		return
	}
	log.Info("reloaded", attrs...)
}
