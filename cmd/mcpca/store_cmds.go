package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/store"
)

func init() { commands = append(commands, newStoreCmd) }

func newStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Check, compact or migrate the CA's store (db/mcpca.db, or PostgreSQL)",
		Long: `The CA keeps used tokens, issued certificates, revocations and the CRL in
db/mcpca.db. Used-token records are pruned after their token expires and bbolt
reuses the freed pages, but the file never shrinks: compact copies the live
records into a new file and replaces the old one. check and compact take the
CA directory's lock, so they fail at once while the CA is served.

With --database postgres://... (or --database-file) check and migrate act on
the PostgreSQL database that CA replicas share, while they serve: migrate
creates or upgrades its schema (every replica also does it at start).`,
	}
	var dir, database, databaseFile string
	check := &cobra.Command{
		Use:   "check",
		Short: "Check the store's consistency and print what it holds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dsn, err := storeDSN(cmd, dir, database, databaseFile, false)
			if err != nil {
				return err
			}
			if dsn != "" {
				rep, err := ca.CheckDatabase(cmd.Context(), dsn)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: consistent (schema version %d)\nused tokens: %d\ncertificates: %d\nrevoked: %d\ntables: %d bytes\n",
					rep.Path, store.SchemaVersion, rep.Tokens, rep.Certificates, rep.Revoked, rep.DiskBytes)
				return nil
			}
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
			if dir == "" {
				return errors.New("--dir is required: compact rewrites a CA directory's db/mcpca.db (PostgreSQL reclaims space itself: autovacuum)")
			}
			before, after, err := ca.CompactStore(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "compacted %s: %d bytes -> %d bytes\n", ca.Layout{Dir: dir}.Store(), before, after)
			return nil
		},
	}
	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the schema of the PostgreSQL database replicas share",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dsn, err := storeDSN(cmd, "", database, databaseFile, true)
			if err != nil {
				return err
			}
			before, after, err := ca.MigrateDatabase(cmd.Context(), dsn)
			if err != nil {
				return err
			}
			if before == after {
				fmt.Fprintf(cmd.ErrOrStderr(), "schema at version %d: nothing to migrate\n", after)
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "schema migrated from version %d to %d\n", before, after)
			}
			return nil
		},
	}
	for _, c := range []*cobra.Command{check, compact} {
		c.Flags().StringVar(&dir, "dir", "", "CA directory made by mcpca init (its db/mcpca.db)")
	}
	for _, c := range []*cobra.Command{check, migrate} {
		c.Flags().StringVar(&database, "database", "", "postgres://USER@HOST/DB: the PostgreSQL database CA replicas share")
		c.Flags().StringVar(&databaseFile, "database-file", "", "file holding the postgres:// URL (keeps its password out of ps)")
	}
	cmd.AddCommand(check, compact, migrate)
	return cmd
}

// storeDSN returns the PostgreSQL connection string of a store command,
// or "" for the CA directory's file.
func storeDSN(cmd *cobra.Command, dir, database, file string, needDB bool) (string, error) {
	if database != "" && !strings.HasPrefix(database, "postgres://") && !strings.HasPrefix(database, "postgresql://") {
		return "", fmt.Errorf("--database %q: want a postgres:// URL", database)
	}
	dsn, err := databaseDSN(cmd.ErrOrStderr(), database, file)
	switch {
	case err != nil:
		return "", err
	case dsn != "" && dir != "":
		return "", errors.New("--dir and --database: give one (the CA directory's db/mcpca.db, or the PostgreSQL database)")
	case dsn == "" && needDB:
		return "", errors.New("--database or --database-file is required: migrate acts on the PostgreSQL database replicas share")
	case dsn == "" && dir == "":
		return "", errors.New("--dir or --database is required")
	}
	return dsn, nil
}
