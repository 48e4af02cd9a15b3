package strictjson

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
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

// splitter asks fastCheckTop to split data as it checks it: the members
// of data, when it is an object, into top; when nest is not empty, the
// members of the member nest, when its value is an object, into nested
// (found says so); and of those, the elements of each member whose key is
// one of split and whose value is an array into its Elements. It splits as
// Members and SplitMembers do.
type splitter struct {
	top    []Member
	nest   string
	split  []string
	nested []Member
	found  bool
	elems  [][]byte // the elements of the member of nested being read
}

// What a frame records, as its values end.
const (
	recNone   = iota
	recTop    // its members, into top
	recNested // its members, into nested
	recElems  // its elements, into elems
)

// opened tells sp that a container (c: '{' or '[') opened as a value of
// the frame parent (nil: at the top) whose member's key is k, and returns
// what the container's frame records.
func (sp *splitter) opened(parent *frame, c byte, k []byte) uint8 {
	switch {
	case parent == nil:
		if c == '{' {
			return recTop
		}
	case parent.rec == recTop:
		if c == '{' && sp.nest != "" && string(k) == sp.nest {
			sp.found = true
			return recNested
		}
	case parent.rec == recNested:
		if c == '[' && sp.splits(k) {
			sp.elems = [][]byte{}
			return recElems
		}
	}
	return recNone
}

func (sp *splitter) splits(k []byte) bool {
	for _, s := range sp.split {
		if string(k) == s {
			return true
		}
	}
	return false
}

// ended tells sp that the value data[f.start:i] of frame f (its member's
// key k) ended.
func (sp *splitter) ended(f *frame, k []byte, v []byte) {
	switch f.rec {
	case recTop:
		sp.top = append(sp.top, Member{Key: string(k), Value: v})
	case recNested:
		m := Member{Key: string(k), Value: v}
		if v[0] == '[' && sp.splits(k) {
			m.Elements = sp.elems
			if m.Elements == nil { // an empty array: no frame was opened
				m.Elements = [][]byte{}
			}
		}
		sp.elems = nil
		sp.nested = append(sp.nested, m)
	case recElems:
		sp.elems = append(sp.elems, v)
	}
}

// frame is an open object or array of fastCheckTop.
type frame struct {
	obj   bool
	rec   uint8 // what it records (splitter)
	first int   // this object's keys are keys[first:]
	start int   // where its current value starts, when it records
}

// fastCheckTop is fastCheck that, when sp is not nil, also splits data as
// sp asks: the check and the split in one pass.
func fastCheckTop(data []byte, sp *splitter) bool {
	var stackBuf [MaxDepth]frame
	var keysBuf [32]key
	stack, keys := stackBuf[:0], keysBuf[:0]
	// lastKey is the key of the current member of the innermost object.
	lastKey := func() []byte {
		if len(stack) == 0 || !stack[len(stack)-1].obj {
			return nil
		}
		return keys[len(keys)-1].b
	}
	n := len(data)
	i := skipSpace(data, 0)
	for {
		// A value starts at i.
		if i >= n {
			return false
		}
		var parent *frame
		if len(stack) > 0 {
			parent = &stack[len(stack)-1]
			if parent.rec != recNone {
				parent.start = i
			}
		}
		switch c := data[i]; c {
		case '{', '[':
			if len(stack) == MaxDepth {
				return false
			}
			var rec uint8
			if sp != nil && (parent == nil || parent.rec != recNone) {
				rec = sp.opened(parent, c, lastKey())
			}
			i = skipSpace(data, i+1)
			if i < n && data[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				i++
				break
			}
			stack = append(stack, frame{obj: c == '{', first: len(keys), rec: rec})
			if c == '{' {
				var ok bool
				if i, keys, ok = objectKey(data, i, keys, stack[len(stack)-1].first); !ok {
					return false
				}
			}
			continue
		case '"':
			j, _, _, ok := scanString(data, i)
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
			if len(stack) > 0 && stack[len(stack)-1].rec != recNone {
				f := &stack[len(stack)-1]
				sp.ended(f, lastKey(), data[f.start:i])
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
func objectKey(data []byte, i int, keys []key, first int) (int, []key, bool) {
	if i >= len(data) || data[i] != '"' {
		return 0, keys, false
	}
	j, escaped, ascii, ok := scanString(data, i)
	if !ok || len(keys)-first == MaxKeys {
		return 0, keys, false
	}
	k := key{b: data[i+1 : j-1], ascii: !escaped && ascii}
	if escaped || !ascii && !utf8.Valid(k.b) { // decoded as every reader decodes it
		var s string
		if err := json.Unmarshal(data[i:j], &s); err != nil {
			return 0, keys, false
		}
		k.b = []byte(s)
	}
	// bytes.EqualFold is Unicode simple folding, as fold; two ASCII keys
	// of different lengths cannot fold to each other.
	for _, prev := range keys[first:] {
		if (len(prev.b) == len(k.b) || !prev.ascii || !k.ascii) && bytes.EqualFold(prev.b, k.b) {
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

// key is an object's key as read, and whether it is all ASCII (as written,
// without escapes).
type key struct {
	b     []byte
	ascii bool
}

// plain marks the bytes a JSON string holds as they are: all but the
// control characters, the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Eight bytes at a time. special has the high bit of each byte of w set
// that is a quote, a backslash, a control character or not ASCII, and
// possibly of bytes after the first such byte (the subtractions borrow),
// never of one before it: its lowest set bit is the first byte to look at.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

func special(w uint64) uint64 {
	q := w ^ (ones * '"')
	bs := w ^ (ones * '\\')
	return ((q - ones) &^ q) | ((bs - ones) &^ bs) | (w - ones*0x20) | w
}

// plainRun returns the index of the first byte at or after j that is not
// a plain ASCII byte of a string (see special), or len(data).
func plainRun(data []byte, j int) int {
	for j+8 <= len(data) {
		if m := special(binary.LittleEndian.Uint64(data[j:])) & highs; m != 0 {
			return j + bits.TrailingZeros64(m)/8
		}
		j += 8
	}
	for j < len(data) && data[j] < 0x80 && plain[data[j]] {
		j++
	}
	return j
}

// scanString checks the JSON string whose opening quote is at data[i] and
// returns the index just past its closing quote, whether it holds escapes
// and whether all its bytes are ASCII.
func scanString(data []byte, i int) (end int, escaped, ascii, ok bool) {
	j := i + 1
	ascii = true
	for {
		j = plainRun(data, j)
		if j >= len(data) {
			return 0, false, false, false
		}
		switch c := data[j]; {
		case c >= 0x80:
			ascii = false
			j++
		case c == '"':
			return j + 1, escaped, ascii, true
		case c == '\\':
			escaped = true
			if j+1 >= len(data) {
				return 0, false, false, false
			}
			switch data[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(data) {
					return 0, false, false, false
				}
				for _, h := range data[j+2 : j+6] {
					if !isHex(h) {
						return 0, false, false, false
					}
				}
				j += 6
			default:
				return 0, false, false, false
			}
		default: // a control character
			return 0, false, false, false
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
	for j := i + 1; ; {
		if j = plainRun(data, j); j >= len(data) {
			return len(data) - 1, escaped
		}
		switch data[j] {
		case '\\':
			escaped = true
			j += 2
		case '"':
			return j, escaped
		default: // not ASCII, or (in an unchecked document) a control character
			j++
		}
	}
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
