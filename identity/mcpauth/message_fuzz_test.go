package mcpauth

import (
	"bytes"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mcpca/mcpca/internal/strictjson"
)

// FuzzCheckMessage holds CheckMessage to the go-sdk's reader: what it
// accepts, jsonrpc.DecodeMessage decodes to the same message, and it never
// panics.
func FuzzCheckMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{}}}`,
		`{"jsonrpc":"2.0","id":"x","result":{"tools":[]}}`, `{"jsonrpc":"2.0","id":7,"error":{"code":-32010,"message":"permission denied"}}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1}}`, `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":null,"method":"x"}`, `{"jsonrpc":"1.0","id":1,"method":"x"}`, `{"jsonrpc":"2.0","METHOD":"x","id":1}`,
		`{"jsonrpc":"2.0","id":[1],"method":"x"}`, `{"jsonrpc":"2.0","id":1,"error":null,"result":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := CheckMessage(data)
		if err != nil {
			return
		}
		want, err := jsonrpc.DecodeMessage(data)
		if err != nil {
			if strictjson.Check(data) == nil {
				t.Fatalf("CheckMessage accepted %q, the go-sdk refuses it: %v", data, err)
			}
			return
		}
		a, err1 := jsonrpc.EncodeMessage(msg)
		b, err2 := jsonrpc.EncodeMessage(want)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Fatalf("%q: CheckMessage %s (%v), the go-sdk %s (%v)", data, a, err1, b, err2)
		}
	})
}
