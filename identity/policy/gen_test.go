package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// gen generates policies, principals and requests over small pools, so that
// scopes and conditions hit as often as they miss.
type gen struct {
	r *rand.Rand
}

var (
	genTDs     = []string{"a.test", "b.test"}
	genNames   = []string{"alice", "bob", "carol", "gw"}
	genRoles   = []string{"reader", "writer", "admin", "intern", "ops"}
	genTools   = []string{"search", "refund", "delete", "fetch", "t0", "t1", "t2", "t3"}
	genURIs    = []string{"file:///docs/a.md", "file:///docs/b.md", "file:///etc/passwd", "db://orders/1", "db://users/2"}
	genPrompts = []string{"summarize", "translate", "p0"}
	genMethods = append(Actions(), "x/unknown", "initialize", "notifications/cancelled")
)

func (g gen) pick(s []string) string { return s[g.r.IntN(len(s))] }

func (g gen) principalUID() string {
	kind := "client"
	if g.r.IntN(4) == 0 {
		kind = "server"
	}
	typ := "Mcp::Client"
	if kind == "server" {
		typ = "Mcp::Server"
	}
	return fmt.Sprintf(`%s::"spiffe://%s/%s/%s"`, typ, g.pick(genTDs), kind, g.pick(genNames))
}

func (g gen) group() string {
	if g.r.IntN(5) == 0 {
		return fmt.Sprintf(`Mcp::TrustDomain::%q`, g.pick(genTDs))
	}
	return fmt.Sprintf(`Mcp::Role::%q`, g.pick(genRoles))
}

func (g gen) resourceUID() string {
	switch g.r.IntN(3) {
	case 0:
		return fmt.Sprintf(`Mcp::Tool::%q`, g.pick(genTools))
	case 1:
		return fmt.Sprintf(`Mcp::Resource::%q`, g.pick(genURIs))
	}
	return fmt.Sprintf(`Mcp::Prompt::%q`, g.pick(genPrompts))
}

func (g gen) resourceType() string {
	return g.pick([]string{"Mcp::Tool", "Mcp::Resource", "Mcp::Prompt", "Mcp::Server"})
}

func (g gen) action() string {
	return fmt.Sprintf(`Mcp::Action::%q`, g.pick(actions[:12]))
}

var genConds = []string{
	`principal.attrs.team == "payments"`,
	`principal.attrs has env && principal.attrs.env == "prod"`,
	`principal.attrs.env == "prod"`,
	`context.hour >= 9 && context.hour < 17`,
	`context.weekday != 0 && context.weekday != 6`,
	`resource.uri like "file:///docs/*"`,
	`resource.uri like "db://*" && principal.attrs.env == "prod"`,
	`resource.uri like "file:///docs/a*" && context.hour > 9`,
	`resource.uri like "*passwd"`,
	`resource.uri like "file:///etc/passwd"`,
	`resource has name && resource.name like "t*"`,
	`context.source_address.isInRange(ip("10.0.0.0/8"))`,
	`principal.roles.contains("admin")`,
	`resource in Mcp::Tool::"refund"`,
	`principal in Mcp::Role::"ops"`,
	`principal.kind == "server"`,
	`principal.not_after > context.now`,
	`context.now < datetime("2026-03-04T12:00:00Z")`,
	`principal is Mcp::Server`,
	`action == Mcp::Action::"tools/call"`,
	`principal.trust_domain == "a.test"`,
	`1 + 2 == 3`,
}

func (g gen) policy() string {
	var b strings.Builder
	if g.r.IntN(4) == 0 {
		b.WriteString("forbid(")
	} else {
		b.WriteString("permit(")
	}
	switch g.r.IntN(6) {
	case 0:
		b.WriteString("principal, ")
	case 1:
		fmt.Fprintf(&b, "principal == %s, ", g.principalUID())
	case 2, 3:
		fmt.Fprintf(&b, "principal in %s, ", g.group())
	case 4:
		fmt.Fprintf(&b, "principal is %s, ", g.pick([]string{"Mcp::Client", "Mcp::Server"}))
	case 5:
		fmt.Fprintf(&b, "principal is %s in %s, ", g.pick([]string{"Mcp::Client", "Mcp::Server"}), g.group())
	}
	switch g.r.IntN(5) {
	case 0:
		b.WriteString("action, ")
	case 1, 2:
		fmt.Fprintf(&b, "action == %s, ", g.action())
	case 3:
		fmt.Fprintf(&b, "action in %s, ", g.action())
	case 4:
		fmt.Fprintf(&b, "action in [%s, %s], ", g.action(), g.action())
	}
	var resType string // the resource type the scope fixes
	switch g.r.IntN(7) {
	case 6:
		b.WriteString("resource is Mcp::Resource)")
		resType = "Mcp::Resource"
	case 0:
		b.WriteString("resource)")
	case 1, 2:
		uid := g.resourceUID()
		fmt.Fprintf(&b, "resource == %s)", uid)
		resType, _, _ = strings.Cut(uid, "::\"")
	case 3:
		uid := g.resourceUID()
		fmt.Fprintf(&b, "resource in %s)", uid)
		resType, _, _ = strings.Cut(uid, "::\"")
	case 4:
		resType = g.resourceType()
		fmt.Fprintf(&b, "resource is %s)", resType)
	case 5:
		resType = g.resourceType()
		fmt.Fprintf(&b, "resource is %s in %s)", resType, g.resourceUID())
	}
	// Reading an attribute the fixed resource type lacks is a load error.
	fits := func(cond string) bool {
		switch {
		case strings.Contains(cond, "resource.uri"):
			return resType == "" || resType == "Mcp::Resource"
		case strings.Contains(cond, "resource.name"):
			return resType == "" || resType == "Mcp::Tool" || resType == "Mcp::Prompt"
		}
		return true
	}
	for n := g.r.IntN(3); n > 0; n-- {
		kw := "when"
		if g.r.IntN(4) == 0 {
			kw = "unless"
		}
		cond := g.pick(genConds)
		for !fits(cond) {
			cond = g.pick(genConds)
		}
		fmt.Fprintf(&b, " %s { %s }", kw, cond)
	}
	b.WriteString(";\n")
	return b.String()
}

func (g gen) policies(n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(g.policy())
	}
	return b.String()
}

func (g gen) principal(t testing.TB) *Principal {
	kind := "client"
	if g.r.IntN(4) == 0 {
		kind = "server"
	}
	var roles []string
	for _, r := range genRoles {
		if g.r.IntN(3) == 0 {
			roles = append(roles, r)
		}
	}
	attrs := map[string]string{}
	if g.r.IntN(2) == 0 {
		attrs["team"] = g.pick([]string{"payments", "search"})
	}
	if g.r.IntN(2) == 0 {
		attrs["env"] = g.pick([]string{"prod", "dev"})
	}
	return principal(t, fmt.Sprintf("spiffe://%s/%s/%s", g.pick(genTDs), kind, g.pick(genNames)), roles, attrs)
}

func (g gen) request() Request {
	r := Request{Method: g.pick(genMethods), Time: t0.Add(time.Duration(g.r.IntN(7*24)) * time.Hour)}
	switch TargetType(r.Method) {
	case TypeTool:
		r.Target = g.pick(genTools)
	case TypeResource:
		r.Target = g.pick(genURIs)
	case TypePrompt:
		r.Target = g.pick(genPrompts)
	}
	if r.Method == "completion/complete" && g.r.IntN(2) == 0 {
		r.TargetType, r.Target = TypePrompt, g.pick(genPrompts)
	}
	switch g.r.IntN(3) {
	case 0:
		r.Source = netip.MustParseAddr("10.1.2.3")
	case 1:
		r.Source = netip.MustParseAddr("2001:db8::1")
	}
	return r
}
