package gateway_test

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/mcpca/mcpca/identity/gateway"
)

// benchFilterPolicy lets everyone list tools and readers call the tools
// whose name starts with "read_" plus three named ones: half of the
// benchmark's list is kept, the other half removed.
const benchFilterPolicy = `
@id("list") permit (principal, action == Mcp::Action::"tools/list", resource);
@id("readers") permit (principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource)
  when { resource.name like "read_*" || ["write_1", "write_3", "write_5"].contains(resource.name) };
@id("no-secrets") forbid (principal, action == Mcp::Action::"tools/call", resource)
  when { resource.name like "*_secret" };
`

// benchToolsResult is a tools/list result of n tools as an upstream sends
// it: name, description and an input schema each, half read_*, half write_*.
func benchToolsResult(b *testing.B, n int) json.RawMessage {
	b.Helper()
	type tool struct {
		Name        string         `json:"name"`
		Description string         `json:"description"`
		InputSchema map[string]any `json:"inputSchema"`
	}
	tools := make([]tool, n)
	for i := range tools {
		kind := "read"
		if i%2 == 1 {
			kind = "write"
		}
		tools[i] = tool{Name: fmt.Sprintf("%s_%d", kind, i), Description: fmt.Sprintf("Tool number %d of the benchmark's upstream.", i),
			InputSchema: map[string]any{"type": "object", "properties": map[string]any{"query": map[string]any{"type": "string"}}, "required": []string{"query"}}}
	}
	raw, err := json.Marshal(map[string]any{"tools": tools, "nextCursor": ""})
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkFilterResult1000 is the gateway's cost of filtering a tools/list
// result of 1,000 tools for one caller. The goal is at most 1 ms per list.
//
//   - message/first: the upstream's whole response as the gateway relays
//     it (Guard.FilterMessage: the message read strictly, once; one policy
//     decision per tool; the kept tools copied as they came, the result put
//     back in the message), for a caller's first list under the policy in
//     force: the policy is reloaded before each list (not timed), so no
//     decision is remembered from the last one.
//   - message/again: the same, for the same caller listing again under the
//     same policy (the decisions the policy set remembers are reused).
//   - result: Guard.FilterResult on the result alone, which checks it
//     itself (the API for a result that was not read with CheckMessage).
func BenchmarkFilterResult1000(b *testing.B) {
	s := gateway.NewBenchSetup(b, benchFilterPolicy, nil)
	pf, set, guard, caller := s.PolicyFile, s.Set, s.Guard, s.Caller
	result := benchToolsResult(b, 1000)
	message := []byte(`{"jsonrpc":"2.0","id":7,"result":` + string(result) + `}`)
	reloads := 0
	reload := func() {
		reloads++
		if err := os.WriteFile(pf, fmt.Appendf([]byte(benchFilterPolicy), "// reload %d\n", reloads), 0o600); err != nil {
			b.Fatal(err)
		}
		gen := set.Generation()
		if err := set.Reload(); err != nil || set.Generation() != gen+1 {
			b.Fatalf("reload: %v (generation %d, was %d)", err, set.Generation(), gen)
		}
	}
	kept := func(b *testing.B, out []byte, inMessage bool) {
		b.Helper()
		var got struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
		}
		if inMessage {
			var m struct {
				ID     int             `json:"id"`
				Result json.RawMessage `json:"result"`
			}
			if err := json.Unmarshal(out, &m); err != nil || m.ID != 7 {
				b.Fatalf("filtered message: %v, id %d", err, m.ID)
			}
			out = m.Result
		}
		if err := json.Unmarshal(out, &got); err != nil || len(got.Tools) != 503 {
			b.Fatalf("filtered list: %d tools, %v; want 500 read_* and write_1, write_3, write_5", len(got.Tools), err)
		}
	}
	filterMessage := func(b *testing.B) {
		out, _, err := guard.FilterMessage(caller, message)
		if err != nil {
			b.Fatal(err)
		}
		kept(b, out, true)
	}
	b.Run("message/first", func(b *testing.B) {
		filterMessage(b)
		b.SetBytes(int64(len(message)))
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			reload()
			b.StartTimer()
			if _, _, err := guard.FilterMessage(caller, message); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("message/again", func(b *testing.B) {
		filterMessage(b)
		b.SetBytes(int64(len(message)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := guard.FilterMessage(caller, message); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("result", func(b *testing.B) {
		out, err := guard.FilterResult(caller, result)
		if err != nil {
			b.Fatal(err)
		}
		kept(b, out, false)
		b.SetBytes(int64(len(result)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := guard.FilterResult(caller, result); err != nil {
				b.Fatal(err)
			}
		}
	})
}
