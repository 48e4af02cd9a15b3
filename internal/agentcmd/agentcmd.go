// Package agentcmd is the `agent` command line, shared by `mcpca agent` and
// the small standalone `mcpca-agent` binary (which links no CA code and so
// idles in about half the memory).
package agentcmd

import (
	"errors"
	"fmt"
	"log/slog"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/agent/daemon"
	"github.com/mcpca/mcpca/internal/secretfile"
	"github.com/mcpca/mcpca/internal/sighup"
)

// agentFlags are the single-identity form of `mcpca agent`.
type agentFlags struct {
	config     string
	name       string
	cert, key  string
	caURL      string
	root       string
	bundle     string
	combined   string
	tokenFile  string
	renewAt    float64
	rekey      bool
	healthAddr string
	exec       string
	signalPID  int
	pidFile    string
	signal     string
	logLevel   string
}

// New returns the agent command.
func New() *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Keep certificates renewed on this host, write them atomically and reload their consumers",
		Long: `Agent renews certificates before they expire (by default once 2/3 of the
lifetime has passed), writes chain, key and bundle atomically, and runs reload
hooks after every renewal. It survives CA outages (exponential backoff, the
current certificate stays in place until it expires) and never renews in a loop.

Give either a YAML configuration with one or more identities:

  mcpca agent --config /etc/mcpca/agent.yaml

or one identity with flags:

  mcpca agent --cert cert.pem --key key.pem --ca-url https://ca:9000 --root root.pem \
      [--renew-at 0.66] [--health-addr 127.0.0.1:9465] [--exec "systemctl reload nginx"] [--signal-pid PID]

With --token-file (token_file in YAML) a host with no certificate yet enrols
with the token first. If a certificate has expired it can no longer be renewed:
the agent says so in its log and on /healthz and waits; write a new token
(mcpca token) to the token file and send SIGHUP.

Logs are JSON on stderr. SIGHUP reloads the configuration; SIGTERM stops.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			load, err := f.loader(cmd)
			if err != nil {
				return err
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", f.logLevel)
			}
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			reload := sighup.Notify(ctx)
			d := daemon.New(daemon.WithLogger(logger))
			return d.Run(ctx, warnExposedTokenFiles(load, logger), reload)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML configuration file with one or more identities")
	fl.StringVar(&f.name, "name", "default", "name of the identity in logs and metrics (flag form)")
	fl.StringVar(&f.cert, "cert", "", "certificate chain file (PEM)")
	fl.StringVar(&f.key, "key", "", "private key file (PEM, written 0600)")
	fl.StringVar(&f.caURL, "ca-url", "", "CA URL (https://host:port)")
	fl.StringVar(&f.root, "root", "", "root certificate file the CA's TLS certificate chains to")
	fl.StringVar(&f.bundle, "bundle", "", "also write the CA's trust bundle to this file")
	fl.StringVar(&f.combined, "combined", "", "also write key and chain together to this file (0600)")
	fl.StringVar(&f.tokenFile, "token-file", "", "enrolment token to use when there is no valid certificate")
	fl.Float64Var(&f.renewAt, "renew-at", 0, "renew once this fraction of the lifetime has passed (default 2/3)")
	fl.BoolVar(&f.rekey, "rekey", false, "use a new key at every renewal")
	fl.StringVar(&f.healthAddr, "health-addr", "", "serve /healthz and /metrics on this loopback address (127.0.0.1:PORT)")
	fl.StringVar(&f.exec, "exec", "", `command to run after each renewal, words separated by spaces, no shell (e.g. "systemctl reload nginx")`)
	fl.IntVar(&f.signalPID, "signal-pid", 0, "process to signal after each renewal")
	fl.StringVar(&f.pidFile, "pid-file", "", "file holding the process id to signal after each renewal")
	fl.StringVar(&f.signal, "signal", "HUP", "signal for --signal-pid / --pid-file")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// warnExposedTokenFiles logs a warning for each token file of the
// configuration that group or others can read, at start and on each reload.
func warnExposedTokenFiles(load func() (*daemon.Config, error), logger *slog.Logger) func() (*daemon.Config, error) {
	return func() (*daemon.Config, error) {
		cfg, err := load()
		if err == nil && cfg != nil {
			for _, id := range cfg.Identities {
				if id.TokenFile == "" {
					continue
				}
				if e := secretfile.Exposure(id.TokenFile); e != "" {
					logger.Warn("agent: token file "+e, "event", "token_file_exposed", "identity", id.Name)
				}
			}
		}
		return cfg, err
	}
}

// loader returns the function the daemon calls at start and on SIGHUP.
func (f *agentFlags) loader(cmd *cobra.Command) (func() (*daemon.Config, error), error) {
	single := []string{"cert", "key", "ca-url", "root", "bundle", "combined", "token-file", "renew-at", "rekey",
		"exec", "signal-pid", "pid-file", "signal", "name"}
	if f.config != "" {
		for _, n := range single {
			if cmd.Flags().Changed(n) {
				return nil, fmt.Errorf("--%s cannot be combined with --config: put it in the configuration file", n)
			}
		}
		if cmd.Flags().Changed("health-addr") {
			return nil, errors.New("--health-addr cannot be combined with --config: set health_addr in the configuration file")
		}
		return func() (*daemon.Config, error) { return daemon.LoadConfig(f.config) }, nil
	}
	var missing []string
	for _, p := range []struct{ name, v string }{{"--cert", f.cert}, {"--key", f.key}, {"--ca-url", f.caURL}, {"--root", f.root}} {
		if p.v == "" {
			missing = append(missing, p.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s: give --config FILE, or --cert, --key, --ca-url and --root", strings.Join(missing, ", "))
	}
	id := daemon.IdentityConfig{
		Name: f.name, CAURL: f.caURL, Root: f.root, Cert: f.cert, Key: f.key, Bundle: f.bundle,
		Combined: f.combined, TokenFile: f.tokenFile, RenewAt: f.renewAt, Rekey: f.rekey,
	}
	if f.exec != "" {
		id.Hooks = append(id.Hooks, daemon.HookConfig{Exec: strings.Fields(f.exec)})
	}
	if f.signalPID != 0 || f.pidFile != "" {
		id.Hooks = append(id.Hooks, daemon.HookConfig{SignalPID: f.signalPID, PIDFile: f.pidFile, Signal: f.signal})
	}
	cfg := &daemon.Config{HealthAddr: f.healthAddr, Identities: []daemon.IdentityConfig{id}}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return func() (*daemon.Config, error) {
		c := *cfg
		c.Identities = []daemon.IdentityConfig{id}
		return &c, c.Validate()
	}, nil
}
