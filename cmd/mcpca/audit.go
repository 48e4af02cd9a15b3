package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/identity/audit"
)

func init() { commands = append(commands, newAuditCmd) }

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Work with the hash-chained authorization audit log",
	}
	var head string
	verify := &cobra.Command{
		Use:   "verify FILE [--head SEQ:HASH]",
		Short: "Check an audit log's hash chain and name the first bad line",
		Long: `Verify reads an audit log written by an mcpca authorizer and checks its hash
chain: each record carries its sequence number and the SHA-256 of the previous
line. It prints the number of records, or exits 1 naming the first bad line and
whether a record was edited, deleted, reordered or truncated.

The chain alone cannot tell a log cut at a record boundary, or rewritten and
re-chained from some record on, from a genuine one. --head SEQ:HASH (what the
server's audit.Log.Head returned, recorded somewhere its host cannot rewrite)
also requires record SEQ to be there and to hash to HASH.`,
		Example: `  mcpca audit verify audit.log --head 1234:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []audit.VerifyOption
			if head != "" {
				seq, hash, err := audit.ParseHead(head)
				if err != nil {
					return fmt.Errorf("--head: %w", err)
				}
				opts = append(opts, audit.WithHead(seq, hash))
			}
			f, err := os.Open(args[0])
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			defer f.Close()
			n, err := audit.Verify(f, opts...)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("%s: %w", args[0], err)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "OK: %d %s, hash chain intact", n, plural(n, "record", "records"))
			if head != "" {
				fmt.Fprint(cmd.OutOrStdout(), ", head matches")
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	verify.Flags().StringVar(&head, "head", "", "SEQ:HASH recorded from audit.Log.Head: the log must hold that record, with that hash")
	cmd.AddCommand(verify)
	return cmd
}
