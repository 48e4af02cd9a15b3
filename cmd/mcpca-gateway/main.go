// Command mcpca-gateway is `mcpca gateway` on its own: the same flags, in
// a binary that links no CA code, for hosts that only front MCP servers.
package main

import (
	"fmt"
	"os"

	"github.com/mcpca/mcpca/internal/gatewaycmd"
)

func main() {
	cmd := gatewaycmd.New()
	cmd.Use = "mcpca-gateway " + cmd.Use[len("gateway "):]
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mcpca-gateway:", err)
		os.Exit(1)
	}
}
