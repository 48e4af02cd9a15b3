// Command mcpca is the mcpca command line: a small CA for MCP identities
// (init, serve, token, provisioner), the holder's side (bootstrap, enroll,
// renew, revoke, inspect), the renewal agent, and the identity tools (verify,
// policy, audit). Each subcommand parses flags, calls a package and prints.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mcpca/mcpca/internal/agentcmd"
	"github.com/mcpca/mcpca/internal/gatewaycmd"
)

// commands holds the constructors of the top-level subcommands. Each file of
// this package registers its own in an init function, so files do not touch
// one another.
var commands = []func() *cobra.Command{agentcmd.New, gatewaycmd.New}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "mcpca",
		Short:         "Mutual-TLS CA and identity toolkit for the Model Context Protocol",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, c := range commands {
		root.AddCommand(c())
	}
	return root
}

// exitError carries a specific exit code (e.g. 1 for "policy check found
// errors") without printing usage.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mcpca:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
