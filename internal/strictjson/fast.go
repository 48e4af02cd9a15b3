package strictjson

import (
	"bytes"
	"encoding/json"
	"reflect"
)

// The fast path. Most documents are fine: fastCheck says so in one pass
// over the bytes, without building a tree or allocating per value (the
// gateway reads every JSON-RPC message with this package). Whatever it
// does not vouch for goes through the full reader, which finds the
// problem and words the error; FuzzFastCheck holds it to never vouching
// for a document the full reader refuses.

// fastCheck reports whether data is one valid JSON value whose objects
// have no two keys that are equal or differ only in case, nested at most
// MaxDepth deep with at most MaxKeys keys each.
func fastCheck(data []byte) bool {
	if !json.Valid(data) {
		return false
	}
	type frame struct {
		obj       bool
		expectKey bool
		first     int // this object's keys are keys[first:]
	}
	var stackBuf [8]frame
	var keysBuf [32][]byte
	stack, keys := stackBuf[:0], keysBuf[:0]
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{', '[':
			if len(stack) >= MaxDepth {
				return false
			}
			stack = append(stack, frame{obj: c == '{', expectKey: c == '{', first: len(keys)})
		case '}', ']':
			keys = keys[:stack[len(stack)-1].first]
			stack = stack[:len(stack)-1]
		case ',':
			if top := &stack[len(stack)-1]; top.obj {
				top.expectKey = true
			}
		case '"':
			j, escaped := stringEnd(data, i)
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].expectKey {
				top := &stack[n-1]
				top.expectKey = false
				if len(keys)-top.first == MaxKeys {
					return false
				}
				k := data[i+1 : j]
				if escaped {
					var s string
					if err := json.Unmarshal(data[i:j+1], &s); err != nil {
						return false
					}
					k = []byte(s)
				}
				// bytes.EqualFold is Unicode simple folding, as fold.
				for _, prev := range keys[top.first:] {
					if bytes.EqualFold(prev, k) {
						return false
					}
				}
				keys = append(keys, k)
			}
			i = j
		}
	}
	return true
}

// stringEnd returns the index of the quote that closes the string whose
// opening quote is at data[i] (data is valid JSON), and whether it holds
// escapes.
func stringEnd(data []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j, escaped
		}
	}
	return len(data) - 1, escaped
}

// needsTree reports whether decoding into t can match a key to a struct
// field by folding case, which checkCase must look for on the full tree.
func needsTree(t reflect.Type) bool {
	return needsTreeSeen(t, map[reflect.Type]bool{})
}

func needsTreeSeen(t reflect.Type, seen map[reflect.Type]bool) bool {
	if t == nil || seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
		return needsTreeSeen(t.Elem(), seen)
	case reflect.Struct:
		return true
	}
	return false
}
