package mcpauth

import (
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// CodeDenied is the JSON-RPC error code of a request the policy denied.
// The MCP specification reserves no code for authorization failures; this
// one lies in the implementation-defined server error range, clear of the
// codes the go-sdk gives meaning to (-32001 to -32005 are its transport's
// "closing" and "rejected" errors, which clients treat as a dead connection).
const CodeDenied = -32010

// DeniedMessage is the message of every denial. It names neither the tool,
// resource or prompt nor the reason, so that a denial for a name that does
// not exist cannot be told from a denial for one that does.
const DeniedMessage = "permission denied"

// CodeAuditFailed is the JSON-RPC error code (the standard "internal
// error") of a request refused because its decision could not be written
// to the audit log (see WithAuditFailOpen).
const CodeAuditFailed = -32603

// AuditFailedMessage is the message of such a refusal. It is the same for
// every request, so it reveals nothing about what was asked.
const AuditFailedMessage = "internal error: the decision could not be audited"

func errAuditFailed() error {
	return &jsonrpc.Error{Code: CodeAuditFailed, Message: AuditFailedMessage}
}

// errDenied is returned to the client for every denied request.
func errDenied() error {
	return &jsonrpc.Error{Code: CodeDenied, Message: DeniedMessage}
}

func errorf(format string, args ...any) error {
	return fmt.Errorf("mcpauth: "+format, args...)
}
