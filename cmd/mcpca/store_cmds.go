package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/ca"
)

func init() { commands = append(commands, newStoreCmd) }

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Check or compact the CA's store (db/mcpca.db) while the CA is stopped",
		Long: `The CA keeps used tokens, issued certificates, revocations and the CRL in
db/mcpca.db. Used-token records are pruned after their token expires and bbolt
reuses the freed pages, but the file never shrinks: compact copies the live
records into a new file and replaces the old one. Both commands take the CA
directory's lock, so they fail at once while the CA is served.`,
	}
	var dir string
	check := &cobra.Command{
		Use:   "check",
		Short: "Check the store's consistency and print what it holds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := ca.CheckStore(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: consistent\nused tokens: %d\ncertificates: %d\nrevoked: %d\nfile: %d bytes (data %d, live %d)\n",
				rep.Path, rep.Tokens, rep.Certificates, rep.Revoked, rep.DiskBytes, rep.FileBytes, rep.LiveBytes)
			return nil
		},
	}
	compact := &cobra.Command{
		Use:   "compact",
		Short: "Rewrite the store with its live records only",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			before, after, err := ca.CompactStore(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "compacted %s: %d bytes -> %d bytes\n", ca.Layout{Dir: dir}.Store(), before, after)
			return nil
		},
	}
	for _, c := range []*cobra.Command{check, compact} {
		c.Flags().StringVar(&dir, "dir", "", "CA directory made by mcpca init (required)")
		_ = c.MarkFlagRequired("dir")
	}
	cmd.AddCommand(check, compact)
	return cmd
}
