package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/secretfile"
	"github.com/mcpca/mcpca/internal/sighup"
)

func init() {
	commands = append(commands, newInitCmd, newServeCmd, newTokenCmd, newProvisionerCmd)
}

func newInitCmd() *cobra.Command {
	var c ca.InitConfig
	var pwFile string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a CA directory: root, intermediate, admin provisioner, configuration",
		Long: `Create a CA directory: a root and an intermediate (ECDSA P-256) whose keys are
encrypted at rest, an admin JWK provisioner (its key encrypted too), step-ca's
configuration (config/ca.json) and mcpca's settings (config/mcpca.json).
It prints the root's SHA-256 fingerprint on stdout (what other hosts give
mcpca bootstrap --fingerprint: FP=$(mcpca init ...)) and its report on stderr.

Without --password-file a random password is generated into <dir>/secrets/password (0600).
A password given with --password-file must be at least 12 characters, 6 of
them different, and not a common password or a keyboard run
(--insecure-password accepts it anyway).

The CA does not serve the provisioners' encrypted keys (GET /provisioners
lists them without): --publish-encrypted-keys serves them, which the step
CLI's "step ca token" needs (or set "publishEncryptedKeys": true in
config/mcpca.json later and reload).

The running CA never uses the root key: --root-key-out FILE writes it there
(outside the CA directory, e.g. removable media) instead of
<dir>/secrets/root_ca_key.`,
		Example: `  mcpca init --dir ./pki --name "Acme MCP CA" --trust-domain acme.test \
             --address 127.0.0.1:9443 --dns localhost`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pwFile != "" {
				pw, err := readPassword(cmd.ErrOrStderr(), pwFile, "")
				if err != nil {
					return err
				}
				c.Password = pw
			}
			res, err := ca.Init(c)
			if err != nil {
				return err
			}
			// Data on stdout (the fingerprint other hosts bootstrap with:
			// FP=$(mcpca init ...)), the report on stderr.
			fmt.Fprintln(cmd.OutOrStdout(), res.RootFingerprint)
			out := cmd.ErrOrStderr()
			fmt.Fprintf(out, "Created the CA %q in %s\n", c.Name, c.Dir)
			fmt.Fprintf(out, "  trust domain:     %s\n", c.TrustDomain)
			fmt.Fprintf(out, "  CA URL:           %s\n", res.CAURL)
			fmt.Fprintf(out, "  root certificate: %s\n", res.Layout.RootCert())
			fmt.Fprintf(out, "  root fingerprint: %s\n", res.RootFingerprint)
			if res.PasswordFile != "" {
				fmt.Fprintf(out, "  password:         generated into %s (0600); keep it safe\n", res.PasswordFile)
			}
			if res.RootKeyFile == res.Layout.RootKey() {
				fmt.Fprintf(out, "  root key:         %s; serve never uses it: move it offline (e.g. mv %s /media/offline/)\n", res.RootKeyFile, res.RootKeyFile)
			} else {
				fmt.Fprintf(out, "  root key:         %s (outside the CA directory; serve never uses it: keep it offline)\n", res.RootKeyFile)
			}
			fmt.Fprintf(out, "  OAuth issuer:     %s (tokens for workloads; signing key %s)\n", res.CAURL, res.Layout.TokenSigningKey())
			if c.PublishEncryptedKeys {
				fmt.Fprintln(out, "  provisioner keys: published (encrypted) at /provisioners, for step ca token")
			}
			fmt.Fprintf(out, "Start it with: mcpca serve --dir %s\n", c.Dir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Dir, "dir", "", "CA directory to create (required)")
	f.StringVar(&c.Name, "name", "", "name of the CA, e.g. \"Acme MCP CA\" (required)")
	f.StringVar(&c.TrustDomain, "trust-domain", "", "SPIFFE trust domain of the identities, e.g. acme.test (required)")
	f.StringVar(&c.Address, "address", "127.0.0.1:9443", "address the CA listens on (host:port)")
	f.StringSliceVar(&c.DNSNames, "dns", nil, "DNS name of the CA for its TLS certificate (repeatable; the address host is added)")
	f.StringVar(&pwFile, "password-file", "", "file holding the password that encrypts the CA keys (default: generate one)")
	f.BoolVar(&c.InsecurePassword, "insecure-password", false, insecurePasswordHelp)
	f.BoolVar(&c.PublishEncryptedKeys, "publish-encrypted-keys", false, "serve the provisioners' encrypted keys to anyone at /provisioners, as step-ca does, for the step CLI's `step ca token` (anyone can then guess their passwords offline)")
	f.StringVar(&c.RootKeyOut, "root-key-out", "", "write the encrypted root key to this new file instead of <dir>/secrets/root_ca_key (serve never needs it: keep it offline)")
	f.StringVar(&c.OIDArc, "oid-arc", "", "OID arc of the roles (<arc>.1) and attributes (<arc>.2) extensions (default "+identity.DefaultOIDArc.String()+"; use your own PEN)")
	f.DurationVar(&c.MaxTTL, "max-ttl", 24*time.Hour, "longest certificate lifetime a token may ask for")
	f.DurationVar(&c.DefaultTTL, "default-ttl", 0, "lifetime of certificates whose token names none (0: min(24h, --max-ttl))")
	_ = cmd.MarkFlagRequired("dir")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("trust-domain")
	return cmd
}

// insecurePasswordHelp is the help of --insecure-password.
const insecurePasswordHelp = "accept a password that fails the strength check (at least 12 characters, 6 different, not common); whoever obtains an encrypted key (a backup, a copy of the directory, a published provisioner key) can then guess it offline and sign as the CA"

func newServeCmd() *cobra.Command {
	var dir, pwFile, addr, database, databaseFile string
	var retention time.Duration
	var maxInFlight int
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the CA in the foreground (SIGHUP reloads, SIGTERM stops)",
		Long: `Run the CA in the foreground: step-ca's HTTP API over TLS 1.3 with mcpca's
enrolment rules. Logs are JSON lines on stderr: one per issuance, renewal and
revocation. SIGHUP reloads the configuration (new provisioners); SIGTERM or
SIGINT stops cleanly. Only one process can serve a directory (lock: <dir>/ca.lock).
The store is db/mcpca.db (--database step-ca: step-ca's db/ca.db, for
comparison). With --database postgres://... (or --database-file FILE holding
that URL, which keeps its password out of ps) the CA runs on PostgreSQL and
any number of replicas, each with its own copy of the CA directory, serve it
at once behind one public address (docs/replicas.md); --address then sets
this replica's own listen address. MCPCA_CPUPROFILE=FILE writes a CPU
profile of the run, for benchmarks (go tool pprof bin/mcpca FILE).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd.ErrOrStderr(), pwFile, dir)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			if p := os.Getenv("MCPCA_CPUPROFILE"); p != "" {
				// A CPU profile of the whole run, written when serve stops.
				f, err := os.Create(p)
				if err != nil {
					return fmt.Errorf("MCPCA_CPUPROFILE: %w", err)
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					f.Close()
					return fmt.Errorf("MCPCA_CPUPROFILE: %w", err)
				}
				defer f.Close()
				defer pprof.StopCPUProfile()
			}
			if maxInFlight < 0 {
				return fmt.Errorf("--max-in-flight %d: must not be negative (0: no bound)", maxInFlight)
			}
			opts := []ca.Option{ca.WithLogger(logger), ca.WithMaxInFlight(maxInFlight)}
			dsn, err := databaseDSN(cmd.ErrOrStderr(), database, databaseFile)
			if err != nil {
				return err
			}
			if dsn != "" {
				database = "postgres"
			}
			switch database {
			case "postgres":
				if retention < 0 {
					return fmt.Errorf("--certificate-retention %s: must not be negative", retention)
				}
				opts = append(opts, ca.WithPostgres(dsn))
				if retention > 0 {
					opts = append(opts, ca.WithStoreOptions(store.WithCertificateRetention(retention)))
				}
			case "store":
				if retention < 0 {
					return fmt.Errorf("--certificate-retention %s: must not be negative", retention)
				}
				if retention > 0 {
					opts = append(opts, ca.WithStoreOptions(store.WithCertificateRetention(retention)))
				}
			case "step-ca":
				opts = append(opts, ca.WithStepCADatabase())
			default:
				return fmt.Errorf("--database %q: want store (db/mcpca.db), step-ca (db/ca.db) or a postgres:// URL", database)
			}
			srv, err := ca.Open(dir, pw, opts...)
			if err != nil {
				return err
			}
			if addr == "" {
				addr = srv.Settings().Address
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				_ = srv.Close(context.Background())
				return fmt.Errorf("listening on %s: %w", addr, err)
			}
			logger.Info("CA serving", "event", "start", "url", "https://"+ln.Addr().String(), "trust_domain", srv.Settings().TrustDomain, "pid", os.Getpid())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sigs)
			hupCtx, stopHup := context.WithCancel(cmd.Context())
			defer stopHup()
			reload := sighup.Notify(hupCtx)
			for {
				select {
				case err := <-done:
					_ = srv.Close(context.Background())
					if errors.Is(err, http.ErrServerClosed) {
						return nil
					}
					return err
				case <-reload:
					if err := srv.Reload(); err != nil {
						logger.Error("reload failed; the previous configuration stays", "event", "reload", "error", err.Error())
					}
				case sig := <-sigs:
					logger.Info("stopping", "event", "stop", "signal", sig.String())
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					err := srv.Close(ctx)
					cancel()
					<-done
					return err
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "CA directory made by mcpca init (required)")
	f.StringVar(&pwFile, "password-file", "", "file holding the CA password (default <dir>/secrets/password)")
	f.StringVar(&addr, "address", "", "override the listen address of the configuration")
	f.DurationVar(&retention, "certificate-retention", 0, "prune a certificate's records this long after it expires, so the store stays bounded (0: keep every certificate, as step-ca does)")
	f.IntVar(&maxInFlight, "max-in-flight", ca.DefaultMaxInFlight, "requests that may write (sign, renew, rekey, revoke) in flight at once; beyond it the CA answers 503 with Retry-After at once instead of queueing (0: no bound)")
	f.StringVar(&database, "database", "store", "store: mcpca's group-commit store (db/mcpca.db); step-ca: step-ca's bbolt driver (db/ca.db), for comparison; postgres://USER@HOST/DB: PostgreSQL, shared by replicas; records are not migrated between them")
	f.StringVar(&databaseFile, "database-file", "", "file holding the postgres:// URL (so its password stays out of ps); instead of --database")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func newTokenCmd() *cobra.Command {
	var (
		dir, pwFile, prov      string
		ttl, tokenTTL          time.Duration
		server                 bool
		roles, attrs, dns, ips []string
	)
	cmd := &cobra.Command{
		Use:   "token NAME",
		Short: "Mint a one-time enrolment token for spiffe://<td>/<client|server>/NAME",
		Long: `Mint a one-time enrolment token. Only the token goes to stdout, so
TOKEN=$(mcpca token ...) works. The token names the identity, its roles and
attributes and the lifetime of the certificate it yields (--ttl); it is
audience-bound to this CA, valid for --token-ttl and redeemable once.`,
		Example: `  mcpca token reporter --dir ./pki --role reader --attr team=payments --attr env=prod
  mcpca token files --server --dns files.acme.test --dir ./pki --role mcp-server`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readPassword(cmd.ErrOrStderr(), pwFile, dir)
			if err != nil {
				return err
			}
			req := ca.TokenRequest{Kind: identity.KindClient, Name: args[0], Roles: roles, DNSNames: dns, Provisioner: prov}
			if server {
				req.Kind = identity.KindServer
			} else if len(dns) > 0 || len(ips) > 0 {
				return errors.New("--dns and --ip are for server identities: add --server")
			}
			for _, s := range ips {
				ip := net.ParseIP(s)
				if ip == nil {
					return fmt.Errorf("--ip %q is not an IP address", s)
				}
				req.IPAddresses = append(req.IPAddresses, ip)
			}
			if len(attrs) > 0 {
				req.Attributes = map[string]string{}
				for _, a := range attrs {
					k, v, ok := strings.Cut(a, "=")
					if !ok {
						return fmt.Errorf("--attr %q: want key=value", a)
					}
					if _, dup := req.Attributes[k]; dup {
						return fmt.Errorf("--attr %q: attribute %q given twice", a, k)
					}
					req.Attributes[k] = v
				}
			}
			req.TTL, req.TokenTTL = ttl, tokenTTL
			tok, err := ca.MintToken(dir, pw, req)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "CA directory (required)")
	f.StringVar(&pwFile, "password-file", "", "file holding the CA password, or the --provisioner's own password (default <dir>/secrets/password)")
	f.StringVar(&prov, "provisioner", ca.AdminProvisioner, "provisioner whose key signs the token")
	f.BoolVar(&server, "server", false, "a server identity (spiffe://<td>/server/NAME) instead of a client")
	f.StringArrayVar(&roles, "role", nil, "role to grant (repeatable)")
	f.StringArrayVar(&attrs, "attr", nil, "attribute key=value to grant (repeatable)")
	f.StringArrayVar(&dns, "dns", nil, "DNS name of a server identity (repeatable)")
	f.StringArrayVar(&ips, "ip", nil, "IP address of a server identity (repeatable)")
	f.DurationVar(&ttl, "ttl", 0, "lifetime of the certificate the token yields (0: the CA's default)")
	f.DurationVar(&tokenTTL, "token-ttl", 5*time.Minute, "lifetime of the token itself")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func newProvisionerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "provisioner", Short: "Manage provisioners (who may mint tokens, and for what)"}
	var (
		dir, pwFile, provPWFile   string
		insecure                  bool
		roles, attrKeys, patterns []string
		dnsPats, ipNets           []string
	)
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a provisioner limited to some roles, attribute keys and names",
		Long: `Add a JWK provisioner whose tokens can grant only the listed roles and
attribute keys, for names matching one of the patterns (path.Match syntax
against "<kind>/<name>", e.g. client/team-a-*), with DNS names and IP
addresses only from --allow-dns and --allow-ip. Its revocation tokens can
revoke only certificates whose names match. The CA enforces the limits.
A running CA (mcpca serve on the same directory) reloads at once.

Adding takes the CA password (--password-file): it proves you are the
operator. With --provisioner-password-file the new provisioner's key is
encrypted with that password instead, so the team that mints its tokens
(mcpca token --provisioner NAME --password-file FILE) never holds the CA
password, which decrypts the admin key too. That password must pass the
strength check (--insecure-password accepts it anyway) and differ from the
CA password.`,
		Example: `  mcpca provisioner add team-a --dir ./pki --allow-role reader --allow-name 'client/team-a-*' \
      --provisioner-password-file team-a.pw`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readPassword(cmd.ErrOrStderr(), pwFile, dir)
			if err != nil {
				return err
			}
			var opts []ca.ProvisionerOption
			if provPWFile != "" {
				own, err := secretfile.Read(provPWFile, cmd.ErrOrStderr())
				if err != nil {
					return fmt.Errorf("reading the provisioner's password: %w", err)
				}
				opts = append(opts, ca.WithProvisionerPassword([]byte(strings.TrimRight(string(own), "\r\n"))))
			}
			if insecure {
				opts = append(opts, ca.WithInsecurePassword())
			}
			if _, err := ca.AddProvisioner(dir, pw, args[0], ca.ProvisionerPolicy{AllowRoles: roles, AllowAttrKeys: attrKeys, AllowNames: patterns, AllowDNS: dnsPats, AllowIPs: ipNets}, opts...); err != nil {
				return err
			}
			out := cmd.ErrOrStderr() // status: nothing here is data
			fmt.Fprintf(out, "Added provisioner %q: roles [%s], attribute keys [%s], names [%s]\n",
				args[0], strings.Join(roles, ", "), strings.Join(attrKeys, ", "), strings.Join(patterns, ", "))
			if provPWFile != "" {
				fmt.Fprintf(out, "Its key is encrypted with the password in %s: give that file to the team (mcpca token --provisioner %s --password-file FILE), not the CA password\n", provPWFile, args[0])
			}
			return askReload(out, dir)
		},
	}
	f := add.Flags()
	f.StringVar(&dir, "dir", "", "CA directory (required)")
	f.StringVar(&pwFile, "password-file", "", "file holding the CA password, which proves you are the operator (default <dir>/secrets/password)")
	f.StringVar(&provPWFile, "provisioner-password-file", "", "file holding the new provisioner's own password, which encrypts its key instead of the CA password (give it to the team that mints its tokens)")
	f.BoolVar(&insecure, "insecure-password", false, insecurePasswordHelp)
	f.StringArrayVar(&roles, "allow-role", nil, "role its tokens may grant (repeatable)")
	f.StringArrayVar(&attrKeys, "allow-attr", nil, "attribute key its tokens may set (repeatable)")
	f.StringArrayVar(&patterns, "allow-name", nil, "name pattern its tokens may use, e.g. 'client/team-a-*' (repeatable; required)")
	f.StringArrayVar(&dnsPats, "allow-dns", nil, "DNS name pattern its server identities may carry, e.g. '*.team-a.acme.test' (repeatable; default none)")
	f.StringArrayVar(&ipNets, "allow-ip", nil, "network (CIDR) its server identities' IP addresses must be in, e.g. 10.1.0.0/16 (repeatable; default none)")
	_ = add.MarkFlagRequired("dir")
	_ = add.MarkFlagRequired("allow-name")

	list := &cobra.Command{
		Use:   "list",
		Short: "List provisioners and their limits",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := ca.LoadSettings(dir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for name, p := range s.Provisioners {
				if p.Admin {
					fmt.Fprintf(out, "%s\tadmin (unrestricted)\n", name)
					continue
				}
				secret := "the CA password"
				if p.OwnPassword {
					secret = "its own password"
				}
				fmt.Fprintf(out, "%s\troles [%s] attribute keys [%s] names [%s] key encrypted with %s\n", name,
					strings.Join(p.AllowRoles, ", "), strings.Join(p.AllowAttrKeys, ", "), strings.Join(p.AllowNames, ", "), secret)
			}
			return nil
		},
	}
	list.Flags().StringVar(&dir, "dir", "", "CA directory (required)")
	_ = list.MarkFlagRequired("dir")

	var out string
	export := &cobra.Command{
		Use:   "export NAME",
		Short: "Write a directory a team mints its tokens from, holding only its provisioner",
		Long: `Write into --out (a new directory) what a delegated team needs to mint and
revoke with the provisioner NAME, and nothing else: config/ca.json with only
that provisioner (its key encrypted with its own password), config/mcpca.json
with only its limits, and the root certificate. No other provisioner's key
(the admin's included), no CA key, no password. Only a provisioner added with
--provisioner-password-file can be exported. Give the team the directory and
its password file; it runs mcpca token --dir OUT --provisioner NAME
--password-file FILE.`,
		Example: `  mcpca provisioner export team-a --dir ./pki --out ./team-a-pki`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := ca.ExportProvisioner(dir, args[0], out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Wrote %s for provisioner %s: give it to the team with the provisioner's password file (mcpca token --dir %s --provisioner %s --password-file FILE)\n", out, args[0], out, args[0])
			return nil
		},
	}
	export.Flags().StringVar(&dir, "dir", "", "CA directory (required)")
	export.Flags().StringVar(&out, "out", "", "new directory to write (required)")
	_ = export.MarkFlagRequired("dir")
	_ = export.MarkFlagRequired("out")
	cmd.AddCommand(add, list, export)
	return cmd
}
