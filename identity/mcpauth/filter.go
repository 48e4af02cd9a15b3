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
	mask := g.usable(c, base, names)
	out := make([]T, 0, len(items))
	for i, it := range items {
		if mask[i] {
			out = append(out, it)
		}
	}
	return out
}

// usable tells, for each of names in order, whether the policy lets c use
// it by base's action: the one filtering decision of Middleware and
// FilterResult.
func (g *Guard) usable(c *Caller, base policy.Request, names []string) []bool {
	allowed := g.authz.Filter(c.principal, base, names)
	mask := make([]bool, len(names))
	j := 0
	for i := range names {
		if j < len(allowed) && allowed[j] == names[i] {
			mask[i] = true
			j++
		}
	}
	return mask
}
