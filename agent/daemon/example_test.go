package daemon_test

import (
	"fmt"
	"log"

	"github.com/mcpca/mcpca/agent/daemon"
)

// A configuration with one identity; `mcpca agent --config` runs it with
// daemon.New(...).Run(ctx, load, sighup).
func ExampleParseConfig() {
	cfg, err := daemon.ParseConfig([]byte(`
health_addr: 127.0.0.1:9465
identities:
  - name: web
    ca_url: https://ca.internal:9000
    root: /etc/mcpca/root.pem
    cert: /etc/mcpca/web/cert.pem
    key: /etc/mcpca/web/key.pem
    token_file: /etc/mcpca/web/token
    hooks:
      - exec: [systemctl, reload, nginx]
`))
	if err != nil {
		log.Fatal(err)
	}
	id := cfg.Identities[0]
	fmt.Printf("%s renews at %.2f of its lifetime, then runs %v\n", id.Name, id.RenewAt, id.Hooks[0].Exec)
	// Output: web renews at 0.67 of its lifetime, then runs [systemctl reload nginx]
}
