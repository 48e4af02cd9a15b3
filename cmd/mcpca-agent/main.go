// Command mcpca-agent is `mcpca agent` on its own: the same flags and
// configuration, in a binary that links no CA code, for hosts that only
// renew certificates (it idles in about half the memory of mcpca).
package main

import (
	"fmt"
	"os"

	"github.com/mcpca/mcpca/internal/agentcmd"
)

func main() {
	cmd := agentcmd.New()
	cmd.Use = "mcpca-agent"
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mcpca-agent:", err)
		os.Exit(1)
	}
}
