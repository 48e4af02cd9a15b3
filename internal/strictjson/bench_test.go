package strictjson

import (
	"encoding/json"
	"fmt"
	"testing"
)

// benchMessage is a tools/list response of n tools, as an upstream sends
// it (the shape of the gateway's BenchmarkFilterResult1000).
func benchMessage(b *testing.B, n int) []byte {
	b.Helper()
	type tool struct {
		Name        string         `json:"name"`
		Description string         `json:"description"`
		InputSchema map[string]any `json:"inputSchema"`
	}
	tools := make([]tool, n)
	for i := range tools {
		tools[i] = tool{Name: fmt.Sprintf("read_%d", i), Description: fmt.Sprintf("Tool number %d of the benchmark's upstream.", i),
			InputSchema: map[string]any{"type": "object", "properties": map[string]any{"query": map[string]any{"type": "string"}}, "required": []string{"query"}}}
	}
	raw, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "result": map[string]any{"tools": tools, "nextCursor": ""}})
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkCheck is the strict check of a 1,000-tool list response
// (CheckMembers: the check and the split of the top object; CheckSplit:
// and the split of the result and its list, as the gateway reads a list),
// and the splitting of its result alone (SplitMembers).
func BenchmarkCheck(b *testing.B) {
	msg := benchMessage(b, 1000)
	b.Run("CheckMembers", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := CheckMembers(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CheckSplit", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		b.ReportAllocs()
		for b.Loop() {
			if _, nested, _, err := CheckSplit(msg, "result", []string{"tools"}); err != nil || len(nested) != 2 || len(nested[1].Elements) != 1000 {
				b.Fatal(err)
			}
		}
	})
	ms, _ := Members(msg)
	var result []byte
	for _, m := range ms {
		if m.Key == "result" {
			result = m.Value
		}
	}
	b.Run("SplitMembers", func(b *testing.B) {
		b.SetBytes(int64(len(result)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := SplitMembers(result, func(k string) bool { return k == "tools" }); err != nil {
				b.Fatal(err)
			}
		}
	})
}
