package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/internal/strictjson"
)

const (
	sessionHeader  = "Mcp-Session-Id"
	versionHeader  = "Mcp-Protocol-Version"
	methodHeader   = "Mcp-Method"
	nameHeader     = "Mcp-Name"
	lastEventID    = "Last-Event-ID"
	callerHeader   = "Mcpca-Caller"
	paramHeaderPre = "Mcp-Param-"
)

// headersVersion is the first protocol revision whose requests carry
// Mcp-Method and Mcp-Name.
const headersVersion = "2026-07-28"

// forwardedRequestHeaders are the client headers passed to the upstream;
// every other one (Authorization, Cookie, a client's Mcpca-Caller, ...)
// is dropped.
var forwardedRequestHeaders = []string{"Accept", "Content-Type", sessionHeader, versionHeader, methodHeader, nameHeader, lastEventID}

// forwardedResponseHeaders are the upstream headers passed to the client.
var forwardedResponseHeaders = []string{"Content-Type", sessionHeader, versionHeader, "Retry-After"}

// ServeHTTP serves the MCP endpoint: POST (messages), GET (the standalone
// SSE stream, and resumption with Last-Event-ID) and DELETE (end of a
// session). Refusals before any JSON-RPC is read are JSON bodies as
// mcpauth.Guard.Handler writes them (Guard.WriteAuthError): 401 without a
// client certificate (or, when the Guard takes tokens, without either, with
// the WWW-Authenticate challenge), 401/403 for a refused token, 403 when a
// certificate does not verify or the session is another identity's, 404 for a
// session the gateway never saw created (or whose binding ended).
func (gw *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := gw.guard.Authenticate(r)
	if err != nil {
		gw.guard.WriteAuthError(w, err)
		return
	}
	for _, k := range []string{sessionHeader, versionHeader, methodHeader, nameHeader, lastEventID} {
		if len(r.Header.Values(k)) > 1 {
			writeError(w, http.StatusBadRequest, "ambiguous request", k+" appears more than once: send it once")
			return
		}
	}
	if sid := r.Header.Get(sessionHeader); sid != "" {
		switch err := gw.guard.CheckSession(sid, c); {
		case errors.Is(err, mcpauth.ErrForeignSession):
			writeError(w, http.StatusForbidden, "session belongs to another identity",
				"start a new session: an MCP session can only be used by the identity that created it")
			return
		case errors.Is(err, mcpauth.ErrUnknownSession):
			http.Error(w, "session not found", http.StatusNotFound)
			return
		}
	}
	switch r.Method {
	case http.MethodPost:
		gw.post(w, r, c)
	case http.MethodGet:
		// Standalone streams live long: they have a bound of their own.
		if !gw.acquire("GET "+c.ID(), gw.cfg.maxStreams) {
			writeError(w, http.StatusTooManyRequests, "too many streams",
				fmt.Sprintf("%s has %d standalone streams open (at most %d): close one first", c.ID(), gw.cfg.maxStreams, gw.cfg.maxStreams))
			return
		}
		defer gw.release("GET " + c.ID())
		gw.forward(w, r, c, nil, nil)
	case http.MethodDelete:
		gw.forward(w, r, c, nil, nil)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed", "MCP's Streamable HTTP transport uses POST, GET and DELETE")
	}
}

// post reads, checks and decides one JSON-RPC message and forwards it.
func (gw *Gateway) post(w http.ResponseWriter, r *http.Request, c *mcpauth.Caller) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, gw.cfg.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeRPCError(w, http.StatusRequestEntityTooLarge, jsonrpc.ID{}, rpcError(mcpauth.CodeInvalidMessage,
				fmt.Sprintf("invalid request: the body exceeds %d bytes", gw.cfg.maxBody)))
			return
		}
		writeRPCError(w, http.StatusBadRequest, jsonrpc.ID{}, rpcError(mcpauth.CodeInvalidMessage, "invalid request: reading the body: "+err.Error()))
		return
	}
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '[' {
		writeRPCError(w, http.StatusBadRequest, jsonrpc.ID{}, rpcError(mcpauth.CodeInvalidMessage,
			"invalid request: JSON-RPC batches are not supported; send one message per HTTP request (MCP since 2025-06-18)"))
		return
	}
	msg, err := mcpauth.CheckMessage(body)
	if err != nil {
		writeRPCError(w, http.StatusBadRequest, jsonrpc.ID{}, err)
		return
	}
	req, isRequest := msg.(*jsonrpc.Request)
	if isRequest {
		if err := checkHeaders(r.Header, req); err != nil {
			writeRPCError(w, http.StatusBadRequest, req.ID, err)
			return
		}
	}
	if isRequest && !req.IsCall() && !strings.HasPrefix(req.Method, "notifications/") {
		// Only notifications go without an id: anything else would be a
		// request the gateway never decided (a server may well run a
		// tools/call that comes without an id).
		writeRPCError(w, http.StatusBadRequest, jsonrpc.ID{}, rpcError(mcpauth.CodeInvalidMessage,
			fmt.Sprintf("invalid request: %q needs an id; only notifications/* are sent without one", req.Method)))
		return
	}
	if !gw.acquire(c.ID(), gw.cfg.maxPerIdentity) {
		if !isRequest || !req.IsCall() {
			writeError(w, http.StatusTooManyRequests, "too many requests in flight",
				fmt.Sprintf("%s has %d requests in flight (at most %d at once): retry when one completes", c.ID(), gw.cfg.maxPerIdentity, gw.cfg.maxPerIdentity))
			return
		}
		gw.cfg.metrics.decision(req.Method, "busy")
		writeRPCError(w, http.StatusOK, req.ID, rpcError(CodeBusy,
			fmt.Sprintf("too many requests in flight for %s (at most %d at once): retry when one completes", c.ID(), gw.cfg.maxPerIdentity)))
		return
	}
	defer gw.release(c.ID())
	if !isRequest || !req.IsCall() {
		// A notification, or the client's answer to a server-to-client
		// request (sampling, elicitation, roots): always passed on.
		gw.forward(w, r, c, body, nil)
		return
	}
	params, err := gw.guard.AuthorizeMessage(c, req)
	if err != nil {
		gw.cfg.metrics.decision(req.Method, "deny")
		writeRPCError(w, http.StatusOK, req.ID, err)
		return
	}
	gw.cfg.metrics.decision(req.Method, "allow")
	if !bytes.Equal(params, req.Params) {
		fwd := *req
		fwd.Params = params
		if body, err = jsonrpc.EncodeMessage(&fwd); err != nil {
			writeRPCError(w, http.StatusOK, req.ID, rpcError(jsonrpc.CodeInternalError, "internal error: re-encoding the request"))
			return
		}
	}
	gw.forward(w, r, c, body, req)
}

// checkHeaders holds the Mcp-Method and Mcp-Name headers to the body: they
// must agree when present, and be present from protocol 2026-07-28 on, so
// that whatever routes by the headers sees what the gateway decided.
func checkHeaders(h http.Header, req *jsonrpc.Request) error {
	required := h.Get(versionHeader) >= headersVersion
	m := h.Get(methodHeader)
	switch {
	case m == "" && required:
		return rpcError(CodeHeaderMismatch, "header mismatch: missing required Mcp-Method header")
	case m != "" && m != req.Method:
		return rpcError(CodeHeaderMismatch, fmt.Sprintf("header mismatch: Mcp-Method header value %q does not match body value %q", m, req.Method))
	}
	key := ""
	switch req.Method {
	case "tools/call", "prompts/get":
		key = "name"
	case "resources/read":
		key = "uri"
	default:
		return nil
	}
	n := h.Get(nameHeader)
	if n == "" && !required {
		return nil
	}
	// The message was checked (CheckMessage): its params can be walked.
	v, _ := strictjson.Lookup(req.Params, key)
	inBody, ok := strictjson.StringValue(v)
	if !ok {
		return rpcError(mcpauth.CodeInvalidMessage, fmt.Sprintf("invalid request: params of %s have no %s", req.Method, key))
	}
	switch {
	case n == "":
		return rpcError(CodeHeaderMismatch, fmt.Sprintf("header mismatch: missing required Mcp-Name header for method %q", req.Method))
	case n != inBody:
		return rpcError(CodeHeaderMismatch, fmt.Sprintf("header mismatch: Mcp-Name header value %q does not match body value %q", n, inBody))
	}
	return nil
}

// forward sends r (with body, when not nil) to the upstream and relays the
// answer. req is the JSON-RPC request being answered (nil for GET, DELETE,
// notifications and client answers): upstream failures are then a
// JSON-RPC error for it.
func (gw *Gateway) forward(w http.ResponseWriter, r *http.Request, c *mcpauth.Caller, body []byte, req *jsonrpc.Request) {
	ctx := r.Context()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	up, err := gw.newRequest(context.WithValue(ctx, callerKey{}, c), r.Method, rd)
	if err != nil {
		gw.upstreamFailed(w, req, err)
		return
	}
	for _, k := range forwardedRequestHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			up.Header[k] = v
		}
	}
	for k, v := range r.Header {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), paramHeaderPre) {
			up.Header[k] = v
		}
	}
	if gw.cfg.signer != nil {
		a, err := gw.assertCaller(c, r.Method, r.Header.Get(sessionHeader), body)
		if err != nil {
			gw.cfg.logger.Error("gateway: signing the caller assertion; refusing the request", "error", err)
			gw.upstreamFailed(w, req, errors.New("the gateway could not sign the caller assertion"))
			return
		}
		up.Header.Set(callerHeader, a)
	}
	start := time.Now()
	resp, err := gw.do(up)
	gw.cfg.metrics.upstream(r.Method, time.Since(start), err)
	if err != nil {
		if ctx.Err() != nil {
			gw.cancelUpstream(r, req, c)
			return // the client went away
		}
		gw.upstreamFailed(w, req, err)
		return
	}
	defer resp.Body.Close()
	sid := r.Header.Get(sessionHeader)
	if s := resp.Header.Get(sessionHeader); s != "" && s != sid && resp.StatusCode/100 == 2 {
		gw.guard.BindSession(s, c)
		gw.cfg.metrics.sessionOpened()
	}
	if r.Method == http.MethodDelete && sid != "" && resp.StatusCode/100 == 2 {
		gw.guard.EndSession(sid)
		gw.cfg.metrics.sessionClosed()
	}
	h := w.Header()
	for _, k := range forwardedResponseHeaders {
		if v := resp.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	cc := "private, no-store"
	mt := mediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode/100 != 2:
		// The upstream's refusal (404 for a session it ended, 400 for a
		// message it refuses, ...) reaches the client as it came.
		gw.cfg.metrics.upstreamStatus(resp.StatusCode)
		h.Set("Cache-Control", cc)
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, io.LimitReader(resp.Body, gw.cfg.maxResponse))
	case mt == "text/event-stream":
		h.Set("Cache-Control", cc+", no-transform")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(resp.StatusCode)
		resumable, err := gw.relayStream(w, resp.Body, c, req)
		if err != nil && ctx.Err() == nil {
			gw.cfg.logger.Warn("gateway: upstream event stream ended", "upstream", gw.Upstream(), "error", err)
		}
		// A client that goes away cancels its request, unless its stream
		// was resumable (its events had IDs): then it may come back with
		// Last-Event-ID, and disconnection is not cancellation (MCP's
		// transport rules).
		if ctx.Err() != nil && !resumable {
			gw.cancelUpstream(r, req, c)
		}
	case mt == "application/json":
		data, err := io.ReadAll(io.LimitReader(resp.Body, gw.cfg.maxResponse+1))
		if err == nil && int64(len(data)) > gw.cfg.maxResponse {
			err = fmt.Errorf("its answer exceeds %d bytes", gw.cfg.maxResponse)
		}
		if err != nil {
			gw.upstreamFailed(w, req, err)
			return
		}
		out, _, err := gw.relayMessage(data, c)
		if err != nil {
			gw.upstreamFailed(w, req, err)
			return
		}
		h.Set("Cache-Control", cc)
		h.Del("Content-Length")
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(out)
	default:
		// 202 Accepted for a notification or an answer, with no body.
		if n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 1)); n > 0 {
			gw.upstreamFailed(w, req, fmt.Errorf("it answered with content of type %q, which is not MCP", resp.Header.Get("Content-Type")))
			return
		}
		h.Set("Cache-Control", cc)
		w.WriteHeader(resp.StatusCode)
	}
}

// mediaType is mime.ParseMediaType's media type of the Content-Type ct
// ("" when it cannot be read), without its parameter map for the two types
// MCP answers with.
func mediaType(ct string) string {
	if ct == "text/event-stream" || ct == "application/json" {
		return ct
	}
	mt, _, _ := mime.ParseMediaType(ct)
	return mt
}

// do sends up to the upstream. With the default client it goes to the
// client's transport directly: http.Client.Do would copy the headers for
// redirects, which that client never follows; errors are worded as
// Client.Do words them.
func (gw *Gateway) do(up *http.Request) (*http.Response, error) {
	if gw.rt == nil {
		return gw.client.Do(up)
	}
	resp, err := gw.rt.RoundTrip(up)
	if err != nil {
		return nil, &url.Error{Op: up.Method[:1] + strings.ToLower(up.Method[1:]), URL: stripPassword(up.URL), Err: err}
	}
	return resp, nil
}

// stripPassword is u as http.Client names it in its errors.
func stripPassword(u *url.URL) string {
	if _, ok := u.User.Password(); ok {
		return strings.Replace(u.String(), u.User.String()+"@", u.User.Username()+":***@", 1)
	}
	return u.String()
}

// relayMessage prepares one JSON-RPC message from the upstream for c
// (Guard.FilterMessage: the message is read once, strictly, and the result
// of a response goes through the FilterResult preparation); requests and
// notifications from the server pass as they came.
func (gw *Gateway) relayMessage(data []byte, c *mcpauth.Caller) ([]byte, jsonrpc.Message, error) {
	out, msg, err := gw.guard.FilterMessage(c, data)
	if err != nil && msg == nil {
		return nil, nil, fmt.Errorf("it answered something that is not a JSON-RPC message (%v)", err)
	}
	return out, msg, err
}

// upstreamFailed answers a request the upstream did not answer properly:
// a JSON-RPC error for req (HTTP 200, so SDK clients hand it to the
// caller), or 502 when there is no request to answer.
func (gw *Gateway) upstreamFailed(w http.ResponseWriter, req *jsonrpc.Request, err error) {
	gw.cfg.metrics.upstreamError()
	var je *jsonrpc.Error
	msg := fmt.Sprintf("upstream %s failed: %v", gw.Upstream(), err)
	if errors.As(err, &je) {
		msg = fmt.Sprintf("upstream %s answered a result the gateway cannot check: %s", gw.Upstream(), je.Message)
	}
	gw.cfg.logger.Warn("gateway: upstream failed", "upstream", gw.Upstream(), "error", err)
	if req != nil && req.IsCall() {
		writeRPCError(w, http.StatusOK, req.ID, rpcError(CodeUpstream, msg))
		return
	}
	writeError(w, http.StatusBadGateway, "upstream failed", msg)
}

// cancelUpstream tells the upstream that the client that sent req went
// away before its answer: notifications/cancelled, in the client's session.
func (gw *Gateway) cancelUpstream(r *http.Request, req *jsonrpc.Request, c *mcpauth.Caller) {
	if req == nil || !req.IsCall() {
		return
	}
	note, err := jsonrpc.EncodeMessage(&jsonrpc.Request{Method: "notifications/cancelled",
		Params: mustJSON(map[string]any{"requestId": req.ID.Raw(), "reason": "the client went away"})})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	up, err := gw.newRequest(ctx, http.MethodPost, bytes.NewReader(note))
	if err != nil {
		return
	}
	up.Header.Set("Content-Type", "application/json")
	up.Header.Set("Accept", "application/json, text/event-stream")
	for _, k := range []string{sessionHeader, versionHeader} {
		if v := r.Header.Get(k); v != "" {
			up.Header.Set(k, v)
		}
	}
	if r.Header.Get(versionHeader) >= headersVersion {
		up.Header.Set(methodHeader, "notifications/cancelled")
	}
	if gw.cfg.signer != nil {
		a, err := gw.assertCaller(c, http.MethodPost, r.Header.Get(sessionHeader), note)
		if err != nil {
			return
		}
		up.Header.Set(callerHeader, a)
	}
	if resp, err := gw.do(up); err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
	}
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
