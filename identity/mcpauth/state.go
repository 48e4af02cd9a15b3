package mcpauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Request state (protocol 2026-07-28, multi round-trip requests): a handler
// that needs input from the client returns an input-required result with an
// opaque requestState, and the client echoes it on its retry. Without
// sessions nothing ties the retry to the caller the state was given to, so
// the Guard seals every requestState a handler returns to that caller's
// SPIFFE ID (HMAC-SHA256 under a key of the Guard's) and opens it when it
// comes back: a state given to one identity is refused from every other,
// and a handler only ever sees the states it produced itself.
//
// A sealed state is "mcpca1." + base64url(MAC) + "." + the handler's state;
// the MAC covers the length-prefixed SPIFFE ID and the state.

const sealPrefix = "mcpca1."

// StateKeySize is the size of the key that seals request states.
const StateKeySize = 32

// CodeStateRefused is the JSON-RPC error code ("invalid params") of a
// request whose requestState was not sealed by this server for its caller.
const CodeStateRefused = -32602

// StateRefusedMessage is the message of such a refusal.
const StateRefusedMessage = "invalid params: requestState was not issued to this caller; send the request again without it"

func errStateRefused() error {
	return &jsonrpc.Error{Code: CodeStateRefused, Message: StateRefusedMessage}
}

func newStateKey() []byte {
	k := make([]byte, StateKeySize)
	_, _ = rand.Read(k) // never fails (crypto/rand)
	return k
}

func (g *Guard) stateMAC(id, state string) []byte {
	m := hmac.New(sha256.New, g.cfg.stateKey)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(id)))
	m.Write(n[:])
	m.Write([]byte(id))
	m.Write([]byte(state))
	return m.Sum(nil)
}

// sealState seals a handler's state to the SPIFFE ID id.
func (g *Guard) sealState(id, state string) string {
	return sealPrefix + base64.RawURLEncoding.EncodeToString(g.stateMAC(id, state)) + "." + state
}

// openState returns the handler's state inside sealed, when it was sealed
// for id by this Guard (or one holding the same key).
func (g *Guard) openState(id, sealed string) (string, bool) {
	rest, ok := strings.CutPrefix(sealed, sealPrefix)
	if !ok {
		return "", false
	}
	mac64, state, ok := strings.Cut(rest, ".")
	if !ok {
		return "", false
	}
	mac, err := base64.RawURLEncoding.DecodeString(mac64)
	if err != nil || !hmac.Equal(mac, g.stateMAC(id, state)) {
		return "", false
	}
	return state, true
}

// openRequestState replaces the sealed requestState of req's params, if
// any, with the handler's own; false when it is not sealed for id.
func (g *Guard) openRequestState(id string, params any) bool {
	p := requestState(params)
	if p == nil || *p == "" {
		return true
	}
	state, ok := g.openState(id, *p)
	if ok {
		*p = state
	}
	return ok
}

// requestState points at the requestState of params, nil for params that
// have none.
func requestState(params any) *string {
	var p *string
	switch params := params.(type) {
	case *mcp.CallToolParamsRaw:
		p = &params.RequestState
	case *mcp.GetPromptParams:
		p = &params.RequestState
	case *mcp.ReadResourceParams:
		p = &params.RequestState
	}
	return p
}

// sealResultState seals the requestState of an input-required result to id.
func (g *Guard) sealResultState(id string, res mcp.Result) {
	var p *string
	switch r := res.(type) {
	case *mcp.CallToolResult:
		p = &r.RequestState
	case *mcp.GetPromptResult:
		p = &r.RequestState
	case *mcp.ReadResourceResult:
		p = &r.RequestState
	}
	if p != nil && *p != "" {
		*p = g.sealState(id, *p)
	}
}
