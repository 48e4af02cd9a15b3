package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/identity"
)

func init() { commands = append(commands, newAuditCmd) }

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Work with the hash-chained authorization audit log",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify FILE",
		Short: "Check an audit log's hash chain and name the first bad line",
		Long: `Verify reads an audit log written by an mcpca authorizer and checks its hash
chain: each record carries its sequence number and the SHA-256 of the previous
line. It prints the number of records, or exits 1 naming the first bad line and
whether a record was edited, deleted, reordered or truncated.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			defer f.Close()
			n, err := identity.VerifyLog(f)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("%s: %w", args[0], err)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK: %d %s, hash chain intact\n", n, plural(n, "record", "records"))
			return nil
		},
	})
	return cmd
}
