package mcpauth_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mcpca/mcpca/identity/mcpauth"
)

// FilterMessage reads the server's message once and filters its result as
// FilterResult does; the rest of the message passes as it came.
func TestFilterMessage(t *testing.T) {
	v, authz, state := benchDeps(t)
	g, err := mcpauth.New(v, authz, mcpauth.WithLogger(slogDiscard()))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "https://127.0.0.1/mcp", nil)
	r.TLS = state
	c, err := g.Authenticate(r)
	if err != nil {
		t.Fatal(err)
	}
	result := `{"tools":[{"name":"search_docs","inputSchema":{"type":"object"}},{"name":"delete_doc","inputSchema":{"type":"object"}}],"nextCursor":"n"}`
	msg := []byte(`{"jsonrpc":"2.0", "id":7 ,"result":` + result + ` , "x":{"y":[1]}}`)
	out, m, err := g.FilterMessage(c, msg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := g.FilterResult(c, json.RawMessage(result))
	if err != nil {
		t.Fatal(err)
	}
	if resp, ok := m.(*jsonrpc.Response); !ok || !bytes.Equal(resp.Result, want) {
		t.Fatalf("message %#v, want the result %s", m, want)
	}
	if wantMsg := `{"jsonrpc":"2.0", "id":7 ,"result":` + string(want) + ` , "x":{"y":[1]}}`; string(out) != wantMsg {
		t.Fatalf("FilterMessage:\n%s\nwant\n%s", out, wantMsg)
	}
	if bytes.Contains(out, []byte("delete_doc")) || !bytes.Contains(out, []byte(`"cacheScope":"private"`)) {
		t.Fatalf("not filtered: %s", out)
	}
	// A result that needs nothing passes as it came, and so do requests.
	for _, in := range []string{
		`{"jsonrpc":"2.0","id":8,"result":{"content":[{"type":"text","text":"hi"}]}}`,
		`{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{"tools":"x"}}`,
		`{"jsonrpc":"2.0","id":10,"error":{"code":-1,"message":"no"}}`,
	} {
		out, m, err := g.FilterMessage(c, []byte(in))
		if err != nil || m == nil || string(out) != in {
			t.Fatalf("FilterMessage(%s) = %s, %v, %v", in, out, m, err)
		}
	}
	// Refusals: what is not a message (no message returned), and a result
	// that cannot be filtered (the message returned).
	for _, tc := range []struct{ in, want string }{
		{`{"jsonrpc":"2.0","id":1,"result":{"tools":[],"TOOLS":[]}}`, `invalid request: keys "tools" and "TOOLS" differ only in case`},
		{`[{"jsonrpc":"2.0","id":1,"result":{}}]`, "invalid request: a JSON-RPC message is a JSON object"},
		{`{"jsonrpc":"2.0","id":1,"result":{"tools":[]}`, "invalid request: "},
		{`{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"a"}}}`, "invalid request: the upstream's tools/list result is not a list"},
		{`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"a"}]}}`, "invalid request: an item of the upstream's tools/list result has no name"},
	} {
		_, m, err := g.FilterMessage(c, []byte(tc.in))
		var je *jsonrpc.Error
		if !errors.As(err, &je) || je.Code != mcpauth.CodeInvalidMessage || !bytes.HasPrefix([]byte(je.Message), []byte(tc.want)) {
			t.Fatalf("FilterMessage(%s): %v, want %q", tc.in, err, tc.want)
		}
		if filterable := bytes.Contains([]byte(tc.want), []byte("upstream's")); filterable != (m != nil) {
			t.Fatalf("FilterMessage(%s): message %v", tc.in, m)
		}
	}
}

// FuzzFilterMessage holds FilterMessage to CheckMessage and FilterResult:
// it accepts what they accept, its result is FilterResult's, the rest of
// the message is as it came, and it never panics.
func FuzzFilterMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search_docs"},{"name":"delete_doc"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"p"}],"requestState":""}}`,
		`{"jsonrpc":"2.0","id":"a","result":{"contents":[]}, "extra":[1,{"tools":[]}]}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","name":"b"}]}}`, `{"jsonrpc":"2.0","method":"x"}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"a"},"prompts":[]}}`, `{"id":2,"result":{"tools":[],"resources":[{"uri":"x"}]},"jsonrpc":"2.0"}`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`, `{"jsonrpc":"2.0","id":1,"result":[{"tools":[]}]}`,
	} {
		f.Add([]byte(s))
	}
	v, authz, state := benchDeps(f)
	g, err := mcpauth.New(v, authz, mcpauth.WithLogger(slogDiscard()))
	if err != nil {
		f.Fatal(err)
	}
	r := httptest.NewRequest("POST", "https://127.0.0.1/mcp", nil)
	r.TLS = state
	c, err := g.Authenticate(r)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, m, err := g.FilterMessage(c, data)
		want, cerr := mcpauth.CheckMessage(data)
		if (m == nil) != (cerr != nil) {
			t.Fatalf("%q: FilterMessage read %v, CheckMessage %v", data, m, cerr)
		}
		if cerr != nil {
			return
		}
		resp, ok := want.(*jsonrpc.Response)
		if !ok || resp.Error != nil || len(resp.Result) == 0 {
			if err != nil || !bytes.Equal(out, data) {
				t.Fatalf("%q passed as %q, %v", data, out, err)
			}
			return
		}
		res, ferr := g.FilterResult(c, resp.Result)
		if (err != nil) != (ferr != nil) || err != nil && err.Error() != ferr.Error() {
			t.Fatalf("%q: FilterMessage %v, FilterResult %v", data, err, ferr)
		}
		if err != nil {
			return
		}
		got, gerr := mcpauth.CheckMessage(out)
		gr, ok := got.(*jsonrpc.Response)
		if gerr != nil || !ok || !bytes.Equal(gr.Result, res) || gr.ID != resp.ID {
			t.Fatalf("%q became %q (%v); the result should be %q", data, out, gerr, res)
		}
	})
}
