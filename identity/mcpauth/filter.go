package mcpauth

import (
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity/policy"
)

// filter removes from a list result the items c may not use with action,
// and marks the result private to the caller's cache: it depends on who
// asked.
func (g *Guard) filter(c *Caller, action string, res mcp.Result) {
	base := policy.Request{Method: action, Source: c.source, Time: g.cfg.clock.Now()}
	switch l := res.(type) {
	case *mcp.ListToolsResult:
		l.Tools = keep(g, c, base, l.Tools, func(t *mcp.Tool) string { return t.Name })
		private(&l.Cacheable)
	case *mcp.ListResourcesResult:
		l.Resources = keep(g, c, base, l.Resources, func(r *mcp.Resource) string { return r.URI })
		private(&l.Cacheable)
	case *mcp.ListResourceTemplatesResult:
		l.ResourceTemplates = keep(g, c, base, l.ResourceTemplates, func(t *mcp.ResourceTemplate) string { return t.URITemplate })
		private(&l.Cacheable)
	case *mcp.ListPromptsResult:
		l.Prompts = keep(g, c, base, l.Prompts, func(p *mcp.Prompt) string { return p.Name })
		private(&l.Cacheable)
	}
}

func private(c *mcp.Cacheable) {
	c.CacheScope = "private"
	c.TTLMs = 0
}

// keep returns the items whose name the policy lets c use, in order.
// The input slice is not modified: the SDK may share it between calls.
func keep[T any](g *Guard, c *Caller, base policy.Request, items []T, name func(T) string) []T {
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = name(it)
	}
	allowed := g.authz.Filter(c.principal, base, names)
	out := make([]T, 0, len(allowed))
	j := 0
	for i, it := range items {
		if j < len(allowed) && allowed[j] == names[i] {
			out = append(out, it)
			j++
		}
	}
	return out
}
