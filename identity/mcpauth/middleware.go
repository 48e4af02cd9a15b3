package mcpauth

import (
	"context"
	"encoding/json"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/policy"
)

type identityKey struct{}

// FromContext returns the verified identity of the caller of the MCP request
// whose handler received ctx. It is set by Guard.Middleware.
func FromContext(ctx context.Context) (*identity.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*identity.Identity)
	return id, ok
}

// Install adds g's middleware to s. Call it before serving.
func (g *Guard) Install(s *mcp.Server) { s.AddReceivingMiddleware(g.Middleware()) }

// alwaysAllowed is policy.AlwaysAllowed: one method table for the adapter
// and `mcpca policy explain`.
var alwaysAllowed = policy.AlwaysAllowed

// Middleware returns the receiving middleware that authorizes every request
// and filters lists. Requests that did not pass Guard.Handler are denied.
func (g *Guard) Middleware() mcp.Middleware {
	g.installed.Store(true)
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		// This frame stays small: the MCP handler runs on top of it, on a
		// goroutine the SDK starts per request, and every byte here makes
		// that goroutine's stack likelier to be grown (copied) again.
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			ctx, c, err := g.authorize(ctx, method, req)
			if err != nil {
				return nil, err
			}
			res, err := next(ctx, method, req)
			if c != nil && err == nil && res != nil {
				g.filterResult(c, method, res)
			}
			return res, err
		}
	}
}

// authorize decides req and audits the decision. It returns the context
// for the handler (carrying the caller's identity), the caller when the
// result may need filtering, and errDenied when req must not be handled.
func (g *Guard) authorize(ctx context.Context, method string, req mcp.Request) (context.Context, *Caller, error) {
	c := g.lookup(req)
	if c == nil {
		if alwaysAllowed(method) {
			return ctx, nil, nil
		}
		g.cfg.logger.Error("mcpauth: request without a verified caller: is the MCP handler wrapped with Guard.Handler?", "method", method)
		return ctx, nil, errDenied()
	}
	ctx = context.WithValue(ctx, identityKey{}, c.principal.Identity())
	if alwaysAllowed(method) {
		return ctx, nil, nil
	}
	params := req.GetParams()
	if method == methodListen {
		g.filterListen(params, c)
		return ctx, nil, nil
	}
	r := g.request(method, params, c)
	start := g.cfg.clock.Now()
	d := g.authz.Authorize(c.principal, r)
	audited := g.audit(c.principal, r, d, g.cfg.clock.Now().Sub(start))
	if !d.Allow {
		return ctx, nil, errDenied()
	}
	if !audited {
		return ctx, nil, errAuditFailed()
	}
	if !g.openRequestState(c.ID(), params) {
		return ctx, nil, errStateRefused()
	}
	return ctx, c, nil
}

// filterResult keeps in a list result only what c may use, and marks
// every result that depends on who asked private to caches: the lists, and
// resources/read, which was authorized for c alone.
func (g *Guard) filterResult(c *Caller, method string, res mcp.Result) {
	if action, ok := policy.ListAction(method); ok {
		g.filter(c, action, res)
		return
	}
	if r, ok := res.(*mcp.ReadResourceResult); ok {
		private(&r.Cacheable)
	}
	g.sealResultState(c.ID(), res)
}

// methodListen opens the notification stream of protocol 2026-07-28.
const methodListen = "subscriptions/listen"

// filterListen lets every caller listen for list changes (they say only
// that a list changed; the lists themselves are filtered), and keeps of the
// resources it asks to be told about only those the policy lets it
// subscribe to (resources/subscribe), each decision audited. The server then
// acknowledges that subset, as the protocol provides.
func (g *Guard) filterListen(params any, c *Caller) {
	p, ok := params.(*mcp.SubscriptionsListenParams)
	if !ok || p == nil || p.Notifications == nil || len(p.Notifications.ResourceSubscriptions) == 0 {
		return
	}
	p.Notifications.ResourceSubscriptions = g.subscribable(c, p.Notifications.ResourceSubscriptions)
}

// subscribable returns the resources of uris that c may subscribe to, each
// decision audited.
func (g *Guard) subscribable(c *Caller, uris []string) []string {
	var kept []string
	for _, uri := range uris {
		r := policy.Request{Method: "resources/subscribe", Target: uri, Source: c.source, Time: g.cfg.clock.Now()}
		d := g.authz.Authorize(c.principal, r)
		if g.audit(c.principal, r, d, g.cfg.clock.Now().Sub(r.Time)) && d.Allow {
			kept = append(kept, uri)
		}
	}
	return kept
}

// lookup finds the caller Handler registered for req.
func (g *Guard) lookup(req mcp.Request) *Caller {
	extra := req.GetExtra()
	if extra == nil || extra.Header == nil {
		return nil
	}
	return g.lookupRef(extra.Header.Get(refHeader))
}

// request builds the policy request for method from its params (the
// go-sdk's types, as the SDK decoded them or as paramsFor decodes raw ones).
func (g *Guard) request(method string, params any, c *Caller) policy.Request {
	r := policy.Request{Method: method, Source: c.source, Time: g.cfg.clock.Now()}
	switch p := params.(type) {
	case *mcp.CallToolParamsRaw:
		r.Target = p.Name
		if g.cfg.toolArgs && len(p.Arguments) > 0 {
			var args map[string]any
			if json.Unmarshal(p.Arguments, &args) == nil {
				r.Args = args
			}
			if r.Args == nil {
				// Arguments that are not a JSON object: decide as if
				// none were given but never as if they were trusted.
				r.Args = map[string]any{}
			}
		}
	case *mcp.ReadResourceParams:
		r.Target = p.URI
	case *mcp.SubscribeParams:
		r.Target = p.URI
	case *mcp.UnsubscribeParams:
		r.Target = p.URI
	case *mcp.GetPromptParams:
		r.Target = p.Name
	case *mcp.CompleteParams:
		if p.Ref != nil {
			switch p.Ref.Type {
			case "ref/prompt":
				r.Target, r.TargetType = p.Ref.Name, policy.TypePrompt
			case "ref/resource":
				r.Target, r.TargetType = p.Ref.URI, policy.TypeResource
			}
		}
	}
	return r
}

// audit writes the record of decision d and reports whether what it
// allows may go ahead: written, no audit log, or WithAuditFailOpen.
func (g *Guard) audit(p *policy.Principal, r policy.Request, d policy.Decision, latency time.Duration) bool {
	if g.cfg.audit == nil {
		return true
	}
	err := g.cfg.audit.Write(policy.AuditRecord(p, r, d, latency))
	if err == nil {
		return true
	}
	if g.cfg.failOpen {
		g.cfg.logger.Error("mcpauth: writing the audit log; serving the request (WithAuditFailOpen)", "error", err)
		return true
	}
	g.cfg.logger.Error("mcpauth: writing the audit log; refusing the request", "error", err)
	return false
}
