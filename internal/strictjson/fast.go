package strictjson

import (
	"bytes"
	"encoding/json"
	"reflect"
	"unicode/utf8"
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
//
// It reads data in one pass, checking the grammar as json.Valid does
// (RFC 8259: strings of any bytes but control characters, with the escapes
// JSON has; numbers in JSON's form; whitespace of four kinds) while it
// compares keys. It only ever errs toward false: anything it is unsure of
// goes to the full reader. FuzzFastCheck holds it to json.Valid and to the
// full reader.
func fastCheck(data []byte) bool { return fastCheckTop(data, nil) }

// fastCheckTop is fastCheck that, when top is not nil and data is an
// object, also appends the members of data to *top, as Members would
// return them: the check and the split in one pass.
func fastCheckTop(data []byte, top *[]Member) bool {
	type frame struct {
		obj   bool
		first int // this object's keys are keys[first:]
	}
	var stackBuf [MaxDepth]frame
	var keysBuf [32][]byte
	stack, keys := stackBuf[:0], keysBuf[:0]
	n := len(data)
	i := skipSpace(data, 0)
	start := 0
	for {
		// A value starts at i.
		if i >= n {
			return false
		}
		if top != nil && len(stack) == 1 && stack[0].obj {
			start = i
		}
		switch c := data[i]; c {
		case '{', '[':
			if len(stack) == MaxDepth {
				return false
			}
			i = skipSpace(data, i+1)
			if i < n && data[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				i++
				break
			}
			stack = append(stack, frame{obj: c == '{', first: len(keys)})
			if c == '{' {
				var ok bool
				if i, keys, ok = objectKey(data, i, keys, stack[len(stack)-1].first); !ok {
					return false
				}
			}
			continue
		case '"':
			j, _, ok := scanString(data, i)
			if !ok {
				return false
			}
			i = j
		case 't':
			if !hasLiteral(data, i, "true") {
				return false
			}
			i += 4
		case 'f':
			if !hasLiteral(data, i, "false") {
				return false
			}
			i += 5
		case 'n':
			if !hasLiteral(data, i, "null") {
				return false
			}
			i += 4
		default:
			j, ok := scanNumber(data, i)
			if !ok {
				return false
			}
			i = j
		}
		// A value ended at i: what follows it is a comma, the end of
		// its object or array, or the end of data.
		for {
			if top != nil && len(stack) == 1 && stack[0].obj {
				*top = append(*top, Member{Key: string(keys[len(keys)-1]), Value: data[start:i]})
			}
			i = skipSpace(data, i)
			if len(stack) == 0 {
				return i == n
			}
			if i >= n {
				return false
			}
			top := stack[len(stack)-1]
			c := data[i]
			if c == ',' {
				i = skipSpace(data, i+1)
				if top.obj {
					var ok bool
					if i, keys, ok = objectKey(data, i, keys, top.first); !ok {
						return false
					}
				}
				break
			}
			if (top.obj && c == '}') || (!top.obj && c == ']') {
				keys = keys[:top.first]
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			return false
		}
	}
}

// objectKey reads the key at data[i] of an object whose keys so far are
// keys[first:], and the colon after it; it returns the index of the value
// and keys with the new one, false when the key is not a string or is
// (up to case) one the object has.
func objectKey(data []byte, i int, keys [][]byte, first int) (int, [][]byte, bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, keys, false
	}
	j, escaped, ok := scanString(data, i)
	if !ok || len(keys)-first == MaxKeys {
		return 0, keys, false
	}
	k := data[i+1 : j-1]
	if escaped || !utf8.Valid(k) { // decoded as every reader decodes it
		var s string
		if err := json.Unmarshal(data[i:j], &s); err != nil {
			return 0, keys, false
		}
		k = []byte(s)
	}
	// bytes.EqualFold is Unicode simple folding, as fold.
	for _, prev := range keys[first:] {
		if bytes.EqualFold(prev, k) {
			return 0, keys, false
		}
	}
	keys = append(keys, k)
	j = skipSpace(data, j)
	if j >= len(data) || data[j] != ':' {
		return 0, keys, false
	}
	return skipSpace(data, j+1), keys, true
}

// plain marks the bytes a JSON string holds as they are: all but the
// control characters, the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString checks the JSON string whose opening quote is at data[i] and
// returns the index just past its closing quote, and whether it holds
// escapes.
func scanString(data []byte, i int) (end int, escaped, ok bool) {
	j := i + 1
	for {
		for j < len(data) && plain[data[j]] {
			j++
		}
		if j >= len(data) {
			return 0, false, false
		}
		switch data[j] {
		case '"':
			return j + 1, escaped, true
		case '\\':
			escaped = true
			if j+1 >= len(data) {
				return 0, false, false
			}
			switch data[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(data) {
					return 0, false, false
				}
				for _, h := range data[j+2 : j+6] {
					if !isHex(h) {
						return 0, false, false
					}
				}
				j += 6
			default:
				return 0, false, false
			}
		default: // a control character
			return 0, false, false
		}
	}
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// scanNumber checks the JSON number at data[i], -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?,
// and returns the index just past it.
func scanNumber(data []byte, i int) (int, bool) {
	n := len(data)
	if i < n && data[i] == '-' {
		i++
	}
	switch {
	case i < n && data[i] == '0':
		i++
	case i < n && '1' <= data[i] && data[i] <= '9':
		for i++; i < n && isDigit(data[i]); i++ {
		}
	default:
		return 0, false
	}
	if i < n && data[i] == '.' {
		i++
		if i >= n || !isDigit(data[i]) {
			return 0, false
		}
		for i++; i < n && isDigit(data[i]); i++ {
		}
	}
	if i < n && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < n && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= n || !isDigit(data[i]) {
			return 0, false
		}
		for i++; i < n && isDigit(data[i]); i++ {
		}
	}
	return i, true
}

func hasLiteral(data []byte, i int, lit string) bool {
	return len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit
}

// stringEnd returns the index of the quote that closes the string whose
// opening quote is at data[i] (data is valid JSON), and whether it holds
// escapes.
func stringEnd(data []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(data); j++ {
		for j < len(data) && plain[data[j]] {
			j++
		}
		if j >= len(data) {
			break
		}
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
