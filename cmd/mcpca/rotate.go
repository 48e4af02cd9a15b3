package main

import (
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mcpca/mcpca/ca"
)

func init() { commands = append(commands, newRotateCmd) }

func newRotateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate the CA's intermediate or root without downtime",
		Long: `Rotate the CA's certificates while it serves (docs/rotation.md). The CA
holds generations: every root is trusted (certs/root_ca.crt, /roots, the
bundle agents fetch), every intermediate held is trusted for what it issued
(its CRL is in the CRL set at /crl), and one intermediate issues. A running
mcpca serve on the directory is asked to reload at once; replicas on
PostgreSQL receive the change through the database.`,
	}
	cmd.AddCommand(newRotateIntermediateCmd(), newRotateRootCmd(), newRotateStatusCmd(), newRotateRetireCmd())
	return cmd
}

// rotateFlags are the flags rotate intermediate and rotate root share.
type rotateFlags struct {
	dir, pwFile          string
	overlap, switchAfter time.Duration
	force                bool
}

func (r *rotateFlags) register(f *pflag.FlagSet, switchAfter time.Duration, switchUsage, overlapUsage, forceUsage string) {
	f.StringVar(&r.dir, "dir", "", "CA directory (required)")
	f.StringVar(&r.pwFile, "password-file", "", "file holding the CA password (default <dir>/secrets/password)")
	f.DurationVar(&r.overlap, "overlap", 0, overlapUsage)
	f.DurationVar(&r.switchAfter, "switch-after", switchAfter, switchUsage)
	f.BoolVar(&r.force, "force", false, forceUsage)
}

// run is the RunE of rotate intermediate and rotate root: it reads the
// password, refuses a negative --overlap, calls rotate with the shared
// options and extra, prints what report says of the result and asks a
// serving CA to reload.
func (r *rotateFlags) run(cmd *cobra.Command, rotate func(string, []byte, ...ca.RotateOption) (*ca.RotationStatus, error),
	extra []ca.RotateOption, report func(io.Writer, *ca.RotationStatus)) error {
	pw, err := readPassword(cmd.ErrOrStderr(), r.pwFile, r.dir)
	if err != nil {
		return err
	}
	if r.overlap < 0 {
		return fmt.Errorf("--overlap %s: must not be negative", r.overlap)
	}
	opts := append([]ca.RotateOption{ca.WithOverlap(r.overlap), ca.WithSwitchAfter(r.switchAfter)}, extra...)
	if r.force {
		opts = append(opts, ca.WithForce())
	}
	st, err := rotate(r.dir, pw, opts...)
	if err != nil {
		return err
	}
	out := cmd.ErrOrStderr()
	report(out, st)
	return askReload(out, r.dir)
}

func newRotateIntermediateCmd() *cobra.Command {
	var r rotateFlags
	var rootKey string
	cmd := &cobra.Command{
		Use:   "intermediate --dir DIR",
		Short: "Make a new intermediate under the current root; it issues after --switch-after",
		Long: `Make a new intermediate (key encrypted with the CA password) signed by the
root of the intermediate issuing now, which every peer already trusts. Its
CRL is in the CRL set at once; it issues after --switch-after (default 10m,
twice the verifiers' CRL refresh, so peers that check CRLs hold its CRL
first; --switch-after 0 --force: at once, when no peer checks CRLs). A
running CA switches on its own then. The replaced intermediate stays trusted
for --overlap after the switch (default and least: the CA's longest
certificate lifetime, so every certificate it issued expires first); mcpca
rotate retire drops it then. Certificates it issued renew onto the new one.
Signing needs the root key: secrets/root_ca_key unless it is kept offline
(--root-key).`,
		Example: `  mcpca rotate intermediate --dir ./pki
  mcpca rotate intermediate --dir ./pki --root-key /media/offline/root_ca_key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var extra []ca.RotateOption
			if rootKey != "" {
				extra = append(extra, ca.WithRootKeyFile(rootKey))
			}
			return r.run(cmd, ca.RotateIntermediate, extra, reportIntermediate)
		},
	}
	f := cmd.Flags()
	r.register(f, ca.DefaultIntermediateSwitchAfter,
		"how long the new intermediate is held (its CRL published) before it issues (shorter than the default needs --force)",
		"how long the replaced intermediate stays trusted after the switch (0: the CA's max certificate lifetime, also the least)",
		"accept a --switch-after shorter than twice the verifiers' CRL refresh (no peer checks CRLs, or a compromise)")
	f.StringVar(&rootKey, "root-key", "", "the root's encrypted key, when it is not where it was written (kept offline)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func reportIntermediate(out io.Writer, st *ca.RotationStatus) {
	n := st.Intermediates[len(st.Intermediates)-1]
	if n.Issuing {
		fmt.Fprintf(out, "Intermediate generation %d (%q) issues now\n", n.Generation, n.Subject)
	} else {
		fmt.Fprintf(out, "Intermediate generation %d (%q) issues from %s\n", n.Generation, n.Subject, stamp(n.IssuesFrom))
	}
	for _, g := range st.Intermediates[:len(st.Intermediates)-1] {
		fmt.Fprintf(out, "Intermediate generation %d (%q) stays trusted; it can be retired after %s (mcpca rotate retire)\n", g.Generation, g.Subject, stamp(g.RetireAfter))
	}
}

func newRotateRootCmd() *cobra.Command {
	var r rotateFlags
	var keyOut string
	cmd := &cobra.Command{
		Use:   "root --dir DIR",
		Short: "Make a new root and an intermediate under it; issuing switches after --switch-after",
		Long: `Make a new root and a new intermediate under it (keys encrypted with the CA
password). The new root is trusted at once: certs/root_ca.crt and /roots
hold both roots, and agents store the new bundle on their next refresh
(hourly) or renewal. The new intermediate issues only after --switch-after
(default 2h, twice the agents' bundle refresh), so every peer trusts the new
root before it meets a certificate chaining to it; a running CA switches on
its own then. The old root and intermediate stay trusted for --overlap after
the switch. The new root's key goes to --root-key-out (default
secrets/root_ca_key.gN): serve never needs it, keep it offline.`,
		Example: `  mcpca rotate root --dir ./pki --root-key-out /media/offline/root_ca_key.g2`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var extra []ca.RotateOption
			if keyOut != "" {
				extra = append(extra, ca.WithRootKeyOut(keyOut))
			}
			return r.run(cmd, ca.RotateRoot, extra, reportRoot)
		},
	}
	f := cmd.Flags()
	r.register(f, ca.DefaultSwitchAfter,
		"how long the new root is trusted before its intermediate issues (shorter than the default needs --force)",
		"how long the old root and intermediate stay trusted after the switch (0: the CA's max certificate lifetime, also the least)",
		"accept a --switch-after shorter than twice the agents' bundle refresh (every peer refreshes sooner, or a compromise)")
	f.StringVar(&keyOut, "root-key-out", "", "write the new root's encrypted key to this new file (default <dir>/secrets/root_ca_key.gN; keep it offline)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func reportRoot(out io.Writer, st *ca.RotationStatus) {
	r := st.Roots[len(st.Roots)-1]
	n := st.Intermediates[len(st.Intermediates)-1]
	fmt.Fprintf(out, "Root generation %d (%q, sha256 %s) is trusted now\n", r.Generation, r.Subject, r.Fingerprint)
	fmt.Fprintf(out, "Intermediate generation %d (%q) issues from %s\n", n.Generation, n.Subject, stamp(n.IssuesFrom))
	for _, g := range st.Roots[:len(st.Roots)-1] {
		if !g.RetireAfter.IsZero() {
			fmt.Fprintf(out, "Root generation %d (%q) stays trusted; it can be retired after %s (mcpca rotate retire)\n", g.Generation, g.Subject, stamp(g.RetireAfter))
		}
	}
}

func newRotateStatusCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "status --dir DIR",
		Short: "Show the trusted roots and intermediates, which one issues, and when the old ones can go",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := ca.ReadRotationStatus(dir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, g := range st.Roots {
				fmt.Fprintf(out, "root %d\t%q\tsha256 %s\tnot after %s\t%s\n", g.Generation, g.Subject, g.Fingerprint, stamp(g.NotAfter), retireState(st.Now, g))
			}
			for _, g := range st.Intermediates {
				state := retireState(st.Now, g)
				switch {
				case g.Issuing:
					state = "issuing"
				case g.IssuesFrom.After(st.Now):
					state = "trusted, issues from " + stamp(g.IssuesFrom)
				}
				fmt.Fprintf(out, "intermediate %d\t%q\troot %d\tnot after %s\t%s\n", g.Generation, g.Subject, g.Root, stamp(g.NotAfter), state)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "CA directory (required)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func retireState(now time.Time, g ca.CAGeneration) string {
	switch {
	case g.RetireAfter.IsZero():
		return "trusted"
	case g.RetireAfter.After(now):
		return "trusted, can be retired after " + stamp(g.RetireAfter)
	}
	return "trusted, can be retired now"
}

func newRotateRetireCmd() *cobra.Command {
	var dir, pwFile string
	var force bool
	cmd := &cobra.Command{
		Use:   "retire --dir DIR",
		Short: "Drop the replaced roots and intermediates past their overlap",
		Long: `Drop the intermediates whose overlap has passed, and the roots left with none:
they leave certs/root_ca.crt, /roots and the CRL set, and the certificates
they issued stop verifying. The intermediate issuing now is never dropped.
--force drops the replaced ones before their time: after a compromise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readPassword(cmd.ErrOrStderr(), pwFile, dir)
			if err != nil {
				return err
			}
			var opts []ca.RotateOption
			if force {
				opts = append(opts, ca.WithForce())
			}
			gone, err := ca.Retire(dir, pw, opts...)
			if err != nil {
				return err
			}
			out := cmd.ErrOrStderr()
			for _, g := range gone {
				fmt.Fprintf(out, "Retired %s generation %d (%q)\n", g.Kind, g.Generation, g.Subject)
			}
			return askReload(out, dir)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "CA directory (required)")
	f.StringVar(&pwFile, "password-file", "", "file holding the CA password (default <dir>/secrets/password)")
	f.BoolVar(&force, "force", false, "drop the replaced generations before their time (a compromise): what they issued stops verifying at once")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// askReload asks a CA serving dir to reload (SIGHUP) after a change to its
// directory (provisioner add, rotate), and says what it did.
func askReload(out io.Writer, dir string) error {
	pid, err := ca.ServingPID(dir)
	switch {
	case err != nil:
		fmt.Fprintf(out, "Could not tell whether a CA serves %s (%v): restart it or send it SIGHUP\n", dir, err)
	case pid == 0:
		fmt.Fprintln(out, "No CA is serving this directory: it takes effect when `mcpca serve` starts")
	default:
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("asking the running CA (pid %d) to reload: %w", pid, err)
		}
		fmt.Fprintf(out, "Asked the running CA (pid %d) to reload: it takes effect without a restart\n", pid)
	}
	return nil
}
