package mcpauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/internal/strictjson"
)

// Deciding raw JSON-RPC messages
//
// An intermediary (mcpca's gateway) sees JSON-RPC messages as bytes, not
// as the go-sdk's typed requests. AuthorizeMessage and FilterResult give it
// the same decisions, audit records, list filtering and request-state
// sealing as Middleware, from the same code: the params are decoded into
// the go-sdk's own types and handed to the builders Middleware uses.
//
// The bytes must be read once, by one reader, the way every party reads
// them: a message with duplicate keys, or keys that differ only in case, is
// refused (CodeInvalidMessage), since encoding/json, which decodes params
// here, would read {"name":"a","NAME":"b"} as "b" where a JavaScript server
// reads "a".

// CodeInvalidMessage is the JSON-RPC error code ("invalid request") of a
// message refused before any decision: not JSON-RPC, ambiguous keys, or
// params of the wrong shape.
const CodeInvalidMessage = -32600

func invalidMessage(why string) error {
	return &jsonrpc.Error{Code: CodeInvalidMessage, Message: "invalid request: " + why}
}

// CheckMessage reads data as one JSON-RPC message, strictly (no duplicate
// or case-variant keys at any depth), and returns it. Errors are
// *jsonrpc.Error values with CodeInvalidMessage, for the client.
func CheckMessage(data []byte) (jsonrpc.Message, error) {
	msg, _, _, err := checkMessage(data, false)
	return msg, err
}

// checkMessage is CheckMessage that, when split is set, also returns the
// members of the message's result, split as prepareResult needs them,
// from the same pass over the bytes (found: the result is an object).
func checkMessage(data []byte, split bool) (jsonrpc.Message, []strictjson.Member, bool, error) {
	nest := ""
	if split {
		nest = "result"
	}
	ms, result, found, err := strictjson.CheckSplit(data, nest, listKeyNames)
	if err != nil {
		return nil, nil, false, invalidMessage(err.Error())
	}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, nil, false, invalidMessage("a JSON-RPC message is a JSON object")
	}
	msg, err := decodeMessage(ms)
	if err != nil {
		return nil, nil, false, invalidMessage(err.Error())
	}
	return msg, result, found, nil
}

// wireKeys are the keys of a JSON-RPC message.
var wireKeys = []string{"jsonrpc", "id", "method", "params", "result", "error"}

// decodeMessage decodes a checked JSON-RPC message, given as its members,
// as the go-sdk's jsonrpc.DecodeMessage does (a "method" key makes it a request; else it is
// a response, which needs an id), from the bytes as they are: without a
// second pass over the document. Its keys are exact: one that differs from
// a JSON-RPC key only in case is refused, since the go-sdk's reader (like
// encoding/json) would take it for that key where a JavaScript one would
// not.
func decodeMessage(ms []strictjson.Member) (jsonrpc.Message, error) {
	var version, idRaw, methodRaw, params, result, errRaw []byte
	for _, m := range ms {
		switch m.Key {
		case "jsonrpc":
			version = m.Value
		case "id":
			idRaw = m.Value
		case "method":
			methodRaw = m.Value
		case "params":
			params = m.Value
		case "result":
			result = m.Value
		case "error":
			errRaw = m.Value
		default:
			for _, k := range wireKeys {
				if strings.EqualFold(k, m.Key) {
					return nil, fmt.Errorf("key %q is not %q: keys are case-sensitive", m.Key, k)
				}
			}
		}
	}
	if v, ok := strictjson.StringValue(version); !ok || v != "2.0" {
		return nil, fmt.Errorf("invalid message version tag %s; expected \"2.0\"", orAbsent(version))
	}
	idv, err := decodeID(idRaw)
	if err != nil {
		return nil, err
	}
	id, err := jsonrpc.MakeID(idv)
	if err != nil {
		return nil, err
	}
	if methodRaw != nil {
		method, ok := strictjson.StringValue(methodRaw)
		if !ok {
			return nil, errors.New("the method is not a string")
		}
		return &jsonrpc.Request{Method: method, ID: id, Params: params}, nil
	}
	if !id.IsValid() {
		return nil, errors.New("a message without a method (a response) needs an id")
	}
	resp := &jsonrpc.Response{ID: id, Result: result}
	if errRaw != nil && string(errRaw) != "null" {
		we := new(jsonrpc.Error)
		if err := strictjson.Unmarshal(errRaw, we); err != nil {
			return nil, fmt.Errorf("error: %v", err)
		}
		resp.Error = we
	}
	return resp, nil
}

// decodeID decodes a checked JSON-RPC id as json.Unmarshal into an any
// does (a number is a float64, as strconv.ParseFloat reads it), without
// its reader for the common ids, numbers and plain strings.
func decodeID(raw []byte) (any, error) {
	if raw == nil || string(raw) == "null" {
		return nil, nil
	}
	if c := raw[0]; c == '-' || ('0' <= c && c <= '9') {
		if f, err := strconv.ParseFloat(string(raw), 64); err == nil {
			return f, nil
		}
	}
	if s, ok := strictjson.StringValue(raw); ok {
		return s, nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("id: %v", err)
	}
	return v, nil
}

func orAbsent(raw []byte) string {
	if raw == nil {
		return "(none)"
	}
	return string(raw)
}

// paramsFor returns a new value of the go-sdk's params type for method,
// for the methods whose params name a target or carry state; nil for the
// others.
func paramsFor(method string) any {
	switch method {
	case "tools/call":
		return new(mcp.CallToolParamsRaw)
	case "resources/read":
		return new(mcp.ReadResourceParams)
	case "resources/subscribe":
		return new(mcp.SubscribeParams)
	case "resources/unsubscribe":
		return new(mcp.UnsubscribeParams)
	case "prompts/get":
		return new(mcp.GetPromptParams)
	case "completion/complete":
		return new(mcp.CompleteParams)
	case methodListen:
		return new(mcp.SubscriptionsListenParams)
	}
	return nil
}

// AuthorizeMessage decides the JSON-RPC request req of caller c exactly as
// Middleware decides it (the method table, the policy, the audit record,
// the subscriptions of subscriptions/listen, the sealed requestState) and
// returns the params to pass on: req.Params itself, or a copy with the
// requestState opened and the subscriptions cut to those allowed. Other
// fields of the params are passed on as they came. A refusal is a
// *jsonrpc.Error for the client: CodeDenied, CodeAuditFailed,
// CodeStateRefused or CodeInvalidMessage. Read req with CheckMessage.
func (g *Guard) AuthorizeMessage(c *Caller, req *jsonrpc.Request) (json.RawMessage, error) {
	method := req.Method
	if policy.AlwaysAllowed(method) {
		return req.Params, nil
	}
	var params any
	if p := paramsFor(method); p != nil && len(req.Params) > 0 && string(req.Params) != "null" {
		if err := json.Unmarshal(req.Params, p); err != nil {
			return nil, invalidMessage("params of " + method + ": " + err.Error())
		}
		params = p
	}
	if method == methodListen {
		p, _ := params.(*mcp.SubscriptionsListenParams)
		if p == nil || p.Notifications == nil || len(p.Notifications.ResourceSubscriptions) == 0 {
			return req.Params, nil
		}
		kept := g.subscribable(c, p.Notifications.ResourceSubscriptions)
		return setPath(req.Params, kept, "notifications", "resourceSubscriptions")
	}
	r := g.request(method, params, c)
	start := g.cfg.clock.Now()
	d := g.authz.Authorize(c.principal, r)
	audited := g.audit(c.principal, r, d, g.cfg.clock.Now().Sub(start))
	if !d.Allow {
		return nil, errDenied()
	}
	if !audited {
		return nil, errAuditFailed()
	}
	p := requestState(params)
	if p == nil || *p == "" {
		return req.Params, nil
	}
	if !g.openRequestState(c.ID(), params) {
		return nil, errStateRefused()
	}
	return setPath(req.Params, *p, "requestState")
}

// resultKeys are the keys of a result FilterResult acts on.
var resultKeys = []string{"tools", "resources", "resourceTemplates", "prompts", "contents", "requestState", "cacheScope", "ttlMs"}

// listKeys maps the key of a list result's items to its list method.
var listKeys = []struct{ key, method, name string }{
	{"tools", "tools/list", "name"},
	{"resources", "resources/list", "uri"},
	{"resourceTemplates", "resources/templates/list", "uriTemplate"},
	{"prompts", "prompts/list", "name"},
}

// listKeyNames are the keys of listKeys.
var listKeyNames = func() []string {
	var ks []string
	for _, l := range listKeys {
		ks = append(ks, l.key)
	}
	return ks
}()

// isListKey tells whether key is the key of a list result's items.
func isListKey(key string) bool {
	for _, l := range listKeys {
		if l.key == key {
			return true
		}
	}
	return false
}

// FilterResult prepares the result of a request that AuthorizeMessage
// allowed for caller c, as Middleware prepares it: a list result (known by
// its shape, so a replayed stream is filtered too) keeps only the items c
// may use, lists and resource contents are marked private to c's cache, and
// the requestState of an input-required result is sealed to c. Other
// fields pass as they came. A result that cannot be read is refused
// (CodeInvalidMessage), never passed on unfiltered.
func (g *Guard) FilterResult(c *Caller, result json.RawMessage) (json.RawMessage, error) {
	if err := strictjson.Check(result); err != nil {
		return nil, invalidMessage("the upstream's result: " + err.Error())
	}
	ms, err := splitResult(result)
	if err != nil {
		return nil, err
	}
	ms, changed, err := g.prepareResult(c, ms)
	if err != nil {
		return nil, err
	}
	if !changed {
		return result, nil
	}
	return appendMembers(make([]byte, 0, membersLen(ms)), ms), nil
}

// FilterMessage reads data, one JSON-RPC message from the server, as
// CheckMessage does, and prepares it for caller c: the result of a
// response as FilterResult prepares it, the other messages (the server's
// requests and notifications, error responses) as they came. The bytes
// are read once: the result is prepared from the message as checked (the
// check splits it too), not checked a second time, and a changed result is
// put in place of the old one, the rest of the message as it came. It
// returns the bytes to send on and the message read. When data is not a
// JSON-RPC message the message is nil and the error is CheckMessage's; when
// the result cannot be prepared, the error is FilterResult's.
func (g *Guard) FilterMessage(c *Caller, data []byte) ([]byte, jsonrpc.Message, error) {
	msg, ms, found, err := checkMessage(data, true)
	if err != nil {
		return nil, nil, err
	}
	resp, ok := msg.(*jsonrpc.Response)
	if !ok || resp.Error != nil || len(resp.Result) == 0 {
		return data, msg, nil
	}
	if !found {
		if ms, err = splitResult(resp.Result); err != nil {
			return nil, msg, err
		}
	}
	ms, changed, err := g.prepareResult(c, ms)
	if err != nil {
		return nil, msg, err
	}
	if !changed {
		return data, msg, nil
	}
	// The new result in place of the old one.
	n := membersLen(ms)
	off := cap(data) - cap(resp.Result)
	if off < 0 || off+len(resp.Result) > len(data) || &data[off] != &resp.Result[0] {
		resp.Result = appendMembers(make([]byte, 0, n), ms)
		out, err := jsonrpc.EncodeMessage(resp)
		if err != nil {
			return nil, msg, invalidMessage("re-encoding the response: " + err.Error())
		}
		return out, msg, nil
	}
	rest := data[off+len(resp.Result):]
	out := make([]byte, 0, off+n+len(rest))
	out = append(out, data[:off]...)
	out = appendMembers(out, ms)
	resp.Result = out[off:len(out):len(out)]
	out = append(out, rest...)
	return out, msg, nil
}

// splitResult splits a checked result into its members, the items of a
// list split too; an error for the client when it is not an object or a
// list is not an array.
func splitResult(result json.RawMessage) ([]strictjson.Member, error) {
	ms, err := strictjson.SplitMembers(result, isListKey)
	if err == nil {
		return ms, nil
	}
	all, err := strictjson.Members(result)
	if err != nil {
		return nil, invalidMessage("the upstream's result is not a JSON object")
	}
	for _, m := range all {
		for _, l := range listKeys {
			if m.Key == l.key {
				if _, err := strictjson.Elements(m.Value); err != nil {
					return nil, invalidMessage("the upstream's " + l.method + " result is not a list")
				}
			}
		}
	}
	return nil, invalidMessage("the upstream's result cannot be read")
}

// prepareResult prepares the members of a checked result, as splitResult
// splits it: a list member keeps the items c may use (in its Elements,
// its Value nil: appendMembers writes them), and so on as FilterResult
// says. It returns the members and whether anything changed.
func (g *Guard) prepareResult(c *Caller, ms []strictjson.Member) ([]strictjson.Member, bool, error) {
	changed, private := false, false
	for _, m := range ms {
		for _, k := range resultKeys {
			if m.Key != k && strings.EqualFold(m.Key, k) {
				return nil, false, invalidMessage(fmt.Sprintf("the upstream's result has the key %q, not %q: keys are case-sensitive", m.Key, k))
			}
		}
	}
	for i := range ms {
		for _, l := range listKeys {
			if ms[i].Key != l.key {
				continue
			}
			if ms[i].Elements == nil {
				return nil, false, invalidMessage("the upstream's " + l.method + " result is not a list")
			}
			kept, err := g.filterItems(c, l.method, l.name, ms[i].Elements)
			if err != nil {
				return nil, false, err
			}
			ms[i].Value, ms[i].Elements, changed, private = nil, kept, true, true
		}
		switch ms[i].Key {
		case "contents":
			private = true
		case "requestState":
			state, ok := strictjson.StringValue(ms[i].Value)
			if !ok {
				return nil, false, invalidMessage("the upstream's requestState is not a string")
			}
			if state != "" {
				ms[i].Value, _ = json.Marshal(g.sealState(c.ID(), state))
				changed = true
			}
		}
	}
	if private {
		ms = setMember(ms, "cacheScope", []byte(`"private"`))
		ms = setMember(ms, "ttlMs", []byte(`0`))
		changed = true
	}
	return ms, changed, nil
}

// setMember sets key to v in ms, in place or at the end.
func setMember(ms []strictjson.Member, key string, v []byte) []strictjson.Member {
	for i := range ms {
		if ms[i].Key == key {
			ms[i].Value, ms[i].Elements = v, nil
			return ms
		}
	}
	return append(ms, strictjson.Member{Key: key, Value: v})
}

// membersLen is an upper bound of the length of ms written by
// appendMembers (a key that needs escapes may take more; append grows).
func membersLen(ms []strictjson.Member) int {
	n := 2
	for _, m := range ms {
		n += len(m.Key) + len(m.Value) + 4
		if m.Value == nil {
			n += 2
			for _, it := range m.Elements {
				n += len(it) + 1
			}
		}
	}
	return n
}

// appendMembers writes ms as a JSON object to b, in order, values as they
// are (each one valid JSON already); a member without a Value is the array
// of its Elements.
func appendMembers(b []byte, ms []strictjson.Member) []byte {
	b = append(b, '{')
	for i, m := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		kb, _ := json.Marshal(m.Key)
		b = append(b, kb...)
		b = append(b, ':')
		if m.Value != nil {
			b = append(b, m.Value...)
			continue
		}
		b = append(b, '[')
		for j, it := range m.Elements {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, it...)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// filterItems keeps of the items of a JSON array the ones whose name (the key
// nameKey) c may use by the list method's action, in order, as they came.
func (g *Guard) filterItems(c *Caller, method, nameKey string, items [][]byte) ([][]byte, error) {
	names := make([]string, len(items))
	for i, it := range items {
		if v, ok := strictjson.Lookup(it, nameKey); ok {
			names[i], _ = strictjson.StringValue(v)
		}
		if names[i] == "" {
			return nil, invalidMessage("an item of the upstream's " + method + " result has no " + nameKey)
		}
	}
	action, _ := policy.ListAction(method)
	base := policy.Request{Method: action, Source: c.source, Time: g.cfg.clock.Now()}
	mask := g.usable(c, base, names)
	kept := make([][]byte, 0, len(items))
	for i, it := range items {
		if mask[i] {
			kept = append(kept, it)
		}
	}
	return kept, nil
}

// setPath returns the JSON object raw with the value at the path of keys
// replaced by v (objects on the way are kept, other keys untouched).
func setPath(raw json.RawMessage, v any, keys ...string) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, invalidMessage("params are not a JSON object")
	}
	var val json.RawMessage
	var err error
	if len(keys) == 1 {
		val, err = json.Marshal(v)
	} else {
		val, err = setPath(obj[keys[0]], v, keys[1:]...)
	}
	if err != nil {
		var je *jsonrpc.Error
		if errors.As(err, &je) {
			return nil, err
		}
		return nil, invalidMessage(err.Error())
	}
	obj[keys[0]] = val
	return json.Marshal(obj)
}
