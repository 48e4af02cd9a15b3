package policy_test

import (
	"bytes"
	"fmt"
	"math/big"
	"net/netip"
	"time"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/audit"
	"github.com/mcpca/mcpca/identity/policy"
)

const examplePolicies = `
@id("readers-search")
permit(principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource == Mcp::Tool::"search");

@id("payments-refunds-business-hours")
permit(principal, action == Mcp::Action::"tools/call", resource == Mcp::Tool::"refund")
when { principal.attrs has team && principal.attrs.team == "payments" && context.hour >= 9 && context.hour < 17 };

@id("docs")
permit(principal in Mcp::Role::"reader", action == Mcp::Action::"resources/read", resource is Mcp::Resource)
when { resource.uri like "file:///docs/*" };

@id("no-interns-refund")
forbid(principal in Mcp::Role::"intern", action, resource == Mcp::Tool::"refund");
`

// In a real server the identity comes from identity.FromCertificate on the
// verified peer certificate.
func exampleIdentity(roles []string, attrs map[string]string) *identity.Identity {
	id, _ := identity.ParseID("spiffe://example.org/client/alice")
	return &identity.Identity{ID: id, Roles: roles, Attributes: attrs, Serial: big.NewInt(1),
		NotAfter: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func ExampleSet_Authorize() {
	set, err := policy.Compile([]policy.File{{Name: "mcp.cedar", Data: []byte(examplePolicies)}})
	if err != nil {
		panic(err)
	}
	// Build the principal once per connection.
	alice := policy.NewPrincipal(exampleIdentity([]string{"reader"}, map[string]string{"team": "payments"}))
	at := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	for _, r := range []policy.Request{
		{Method: "initialize"},
		{Method: "tools/call", Target: "search"},
		{Method: "tools/call", Target: "refund", Time: at},
		{Method: "tools/call", Target: "refund", Time: at.Add(8 * time.Hour)},
		{Method: "resources/read", Target: "file:///docs/intro.md", Source: netip.MustParseAddr("192.0.2.1")},
		{Method: "prompts/get", Target: "summarize"},
	} {
		d := set.Authorize(alice, r)
		fmt.Println(r.Method, r.Target, d, d.Policies, d.Reason)
	}
	// Output:
	// initialize  allow [] always allowed
	// tools/call search allow [readers-search] permitted
	// tools/call refund allow [payments-refunds-business-hours] permitted
	// tools/call refund deny [] no policy permits
	// resources/read file:///docs/intro.md allow [docs] permitted
	// prompts/get summarize deny [] no policy permits
}

func ExampleSet_FilterTools() {
	set, err := policy.Compile([]policy.File{{Name: "mcp.cedar", Data: []byte(examplePolicies)}})
	if err != nil {
		panic(err)
	}
	intern := policy.NewPrincipal(exampleIdentity([]string{"reader", "intern"}, map[string]string{"team": "payments"}))
	fmt.Println(set.FilterTools(intern, []string{"search", "refund", "delete"}))
	// Output: [search]
}

func ExampleCompile_error() {
	_, err := policy.Compile([]policy.File{{Name: "mcp.cedar", Data: []byte(
		`permit(principal, action == Mcp::Action::"tools/cal", resource);`)}})
	fmt.Println(err)
	// Output: policy: mcp.cedar:1:42: unknown action Mcp::Action::"tools/cal": expected an MCP method such as "tools/call", "resources/read" or "prompts/get"
}

func ExampleAuditRecord() {
	set, err := policy.Compile([]policy.File{{Name: "mcp.cedar", Data: []byte(examplePolicies)}})
	if err != nil {
		panic(err)
	}
	var buf bytes.Buffer
	log := audit.New(&buf)
	alice := policy.NewPrincipal(exampleIdentity([]string{"reader"}, nil))
	r := policy.Request{Method: "tools/call", Target: "search", Time: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	start := time.Now()
	d := set.Authorize(alice, r)
	rec := policy.AuditRecord(alice, r, d, time.Since(start))
	rec.LatencyUS = 1.5 // for a stable example output
	if err := log.Write(rec); err != nil {
		panic(err)
	}
	fmt.Print(buf.String())
	// Output:
	// {"seq":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000","time":"2026-03-04T10:00:00Z","spiffe_id":"spiffe://example.org/client/alice","serial":"1","auth":"mtls","roles":["reader"],"method":"tools/call","target":"search","decision":"allow","policies":["readers-search"],"latency_us":1.5}
}
