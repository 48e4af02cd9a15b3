package strictjson

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
)

// FuzzWalk holds Members and Elements to encoding/json on every document
// Check accepts: the same keys, in order, with the same values.
func FuzzWalk(f *testing.F) {
	for _, s := range []string{
		`{"tools":[{"name":"a","x":{"y":[1,2,"]"]}},{"name":"b\"c"}],"n":1.5e3,"t":true,"z":null}`,
		`{"result":{"tools":[{"name":"a"},{"name":"b"}],"x":1},"id":1}`, `{"r":{"t":[],"u":{},"v":"w"}}`, `{"r":{}}`,
		`{"\u006eame":"x"}`, `[1, "a", {"b":[]}, [ ], { } ]`, ` { "a" : "b" } `, `[]`, `{}`, `"s"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if Check(data) != nil {
			return
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(data, &obj) == nil && obj != nil {
			ms, err := Members(data)
			if err != nil || len(ms) != len(obj) {
				t.Fatalf("Members(%q) = %v, %v; encoding/json has %d keys", data, ms, err, len(obj))
			}
			for _, m := range ms {
				if !bytes.Equal(bytes.TrimSpace(obj[m.Key]), m.Value) {
					t.Fatalf("Members(%q): %q = %q, encoding/json says %q", data, m.Key, m.Value, obj[m.Key])
				}
				if v, ok := Lookup(data, m.Key); !ok || !bytes.Equal(v, m.Value) {
					t.Fatalf("Lookup(%q, %q) = %q %v, want %q", data, m.Key, v, ok, m.Value)
				}
			}
			// The one-pass split of Check and the splitting of arrays
			// find the same members.
			cms, err := CheckMembers(data)
			if err != nil || len(cms) != len(ms) {
				t.Fatalf("CheckMembers(%q) = %v, %v; Members %v", data, cms, err, ms)
			}
			sms, err := SplitMembers(data, func(k string) bool { v, _ := Lookup(data, k); return v[0] == '[' })
			if err != nil || len(sms) != len(ms) {
				t.Fatalf("SplitMembers(%q) = %v, %v; Members %v", data, sms, err, ms)
			}
			for i, m := range ms {
				if cms[i].Key != m.Key || !bytes.Equal(cms[i].Value, m.Value) {
					t.Fatalf("CheckMembers(%q)[%d] = %q: %q, Members %q: %q", data, i, cms[i].Key, cms[i].Value, m.Key, m.Value)
				}
				if sms[i].Key != m.Key || !bytes.Equal(sms[i].Value, m.Value) {
					t.Fatalf("SplitMembers(%q)[%d] = %q: %q, Members %q: %q", data, i, sms[i].Key, sms[i].Value, m.Key, m.Value)
				}
				if m.Value[0] == '[' {
					es, _ := Elements(m.Value)
					if len(es) != len(sms[i].Elements) {
						t.Fatalf("SplitMembers(%q): %q has %d elements, Elements says %d", data, m.Key, len(sms[i].Elements), len(es))
					}
					for j := range es {
						if !bytes.Equal(es[j], sms[i].Elements[j]) {
							t.Fatalf("SplitMembers(%q): %q[%d] = %q, Elements says %q", data, m.Key, j, sms[i].Elements[j], es[j])
						}
					}
				}
			}
			// CheckSplit's one pass finds what Members and SplitMembers
			// find, for every member as the one to nest into.
			for _, m := range ms {
				if m.Key != "" { // "" asks for no nesting
					checkSplit(t, data, m)
				}
			}
			if v, ok := Lookup(data, "\x00absent"); ok {
				t.Fatalf("Lookup of an absent key: %q", v)
			}
		}
		var arr []json.RawMessage
		if json.Unmarshal(data, &arr) == nil && arr != nil {
			es, err := Elements(data)
			if err != nil || len(es) != len(arr) {
				t.Fatalf("Elements(%q) = %q, %v; encoding/json has %d", data, es, err, len(arr))
			}
			for i := range es {
				if !bytes.Equal(bytes.TrimSpace(arr[i]), es[i]) {
					t.Fatalf("Elements(%q)[%d] = %q, encoding/json says %q", data, i, es[i], arr[i])
				}
			}
		}
		var s string
		if json.Unmarshal(data, &s) == nil {
			if got, ok := StringValue(bytes.TrimSpace(data)); !ok || got != s {
				t.Fatalf("StringValue(%q) = %q %v, want %q", data, got, ok, s)
			}
		}
	})
}

// checkSplit holds CheckSplit(data, m.Key, ...) to Members and
// SplitMembers of m's value, splitting the members whose value is an array
// and one whose value is not.
func checkSplit(t *testing.T, data []byte, m Member) {
	t.Helper()
	inner, err := Members(m.Value)
	var split []string
	for i, im := range inner {
		if im.Value[0] == '[' || i == 1 {
			split = append(split, im.Key)
		}
	}
	top, nested, found, err2 := CheckSplit(data, m.Key, split)
	if err2 != nil || len(top) == 0 {
		t.Fatalf("CheckSplit(%q, %q) = %v, %v", data, m.Key, top, err2)
	}
	if found != (err == nil) {
		t.Fatalf("CheckSplit(%q, %q): found %v, Members of the value: %v", data, m.Key, found, err)
	}
	if !found {
		return
	}
	if len(nested) != len(inner) {
		t.Fatalf("CheckSplit(%q, %q) nested %q, Members %q", data, m.Key, nested, inner)
	}
	for i, im := range inner {
		if nested[i].Key != im.Key || !bytes.Equal(nested[i].Value, im.Value) {
			t.Fatalf("CheckSplit(%q, %q)[%d] = %q: %q, Members %q: %q", data, m.Key, i, nested[i].Key, nested[i].Value, im.Key, im.Value)
		}
		es, eerr := Elements(im.Value)
		if !slices.Contains(split, im.Key) || eerr != nil {
			if nested[i].Elements != nil {
				t.Fatalf("CheckSplit(%q, %q): %q split into %q", data, m.Key, im.Key, nested[i].Elements)
			}
			continue
		}
		if nested[i].Elements == nil || len(es) != len(nested[i].Elements) {
			t.Fatalf("CheckSplit(%q, %q): %q elements %q, Elements %q", data, m.Key, im.Key, nested[i].Elements, es)
		}
		for j := range es {
			if !bytes.Equal(es[j], nested[i].Elements[j]) {
				t.Fatalf("CheckSplit(%q, %q): %q[%d] = %q, Elements %q", data, m.Key, im.Key, j, nested[i].Elements[j], es[j])
			}
		}
	}
}

// TestWalkUnterminated: an unterminated key is refused, not a panic (the
// walkers expect checked documents; given others they must still not
// crash).
func TestWalkUnterminated(t *testing.T) {
	for _, s := range []string{`{"`, `{"a`, `{ "`} {
		if _, ok := Lookup([]byte(s), "a"); ok {
			t.Errorf("Lookup(%q) found a value", s)
		}
		if _, err := Members([]byte(s)); err == nil {
			t.Errorf("Members(%q) accepted it", s)
		}
	}
}
