package policy_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/mcpca/mcpca/identity/policy"
)

func ExampleNew() {
	dir, _ := os.MkdirTemp("", "policy-example")
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "mcp.cedar")
	os.WriteFile(file, []byte(`permit(principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource == Mcp::Tool::"search");`), 0o600)

	authz, err := policy.New([]string{file}, policy.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	// A server runs authz.Watch(ctx) in a goroutine and calls authz.Reload()
	// on SIGHUP.
	alice := policy.NewPrincipal(exampleIdentity([]string{"reader"}, nil))
	fmt.Println(authz.Authorize(alice, policy.Request{Method: "tools/call", Target: "search"}))

	// A broken edit is refused; the last good policy set stays in force.
	os.WriteFile(file, []byte(`permit(principal, action == Mcp::Action::"tools/cal", resource);`), 0o600)
	fmt.Println(authz.Reload() != nil, authz.Generation())
	fmt.Println(authz.Authorize(alice, policy.Request{Method: "tools/call", Target: "search"}))

	// A good edit takes effect.
	os.WriteFile(file, []byte(`forbid(principal, action, resource);`), 0o600)
	fmt.Println(authz.Reload(), authz.Generation())
	fmt.Println(authz.Authorize(alice, policy.Request{Method: "tools/call", Target: "search"}))
	// Output:
	// allow
	// true 1
	// allow
	// <nil> 2
	// deny
}
