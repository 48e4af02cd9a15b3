package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// JSON-RPC error codes of the gateway's own refusals (the policy's are
// mcpauth's: CodeDenied, CodeAuditFailed, CodeStateRefused,
// CodeInvalidMessage). They lie in the implementation-defined server error
// range, clear of the go-sdk's.
const (
	// CodeHeaderMismatch: the Mcp-Method or Mcp-Name header disagrees
	// with the body (the go-sdk's code for the same check).
	CodeHeaderMismatch = -32020
	// CodeUpstream: the upstream could not be reached, did not answer in
	// time, or answered something that is not MCP.
	CodeUpstream = -32030
	// CodeBusy: the caller has too many requests in flight.
	CodeBusy = -32031
)

func errorf(format string, args ...any) error {
	return fmt.Errorf("gateway: "+format, args...)
}

func rpcError(code int64, msg string) *jsonrpc.Error {
	return &jsonrpc.Error{Code: code, Message: msg}
}

// writeRPCError answers with a JSON-RPC error response for id (nil: the
// request could not be read, so its id is null) and the HTTP status.
func writeRPCError(w http.ResponseWriter, status int, id jsonrpc.ID, e error) {
	je, ok := e.(*jsonrpc.Error)
	if !ok {
		je = rpcError(jsonrpc.CodeInternalError, e.Error())
	}
	b, err := jsonrpc.EncodeMessage(&jsonrpc.Response{ID: id, Error: je})
	if err != nil { // an id that cannot be encoded: answer with a null id
		b, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": nil, "error": je})
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "private, no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// errorBody is the JSON body of a refused HTTP request that is not a
// JSON-RPC request (as mcpauth.Guard.Handler answers).
type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, msg, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "private, no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg, Detail: detail})
}
