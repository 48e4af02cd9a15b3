package strictjson

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// Walking checked documents. Members and Elements split a JSON object or
// array into its parts without decoding them, for a reader that needs a
// few keys of a large document (the gateway filtering a list of a
// thousand tools) and passes the rest on as it came. They expect a
// document Check (or Unmarshal) accepted; given anything else they return
// an error, never a wrong answer for valid input.

// Member is one key of an object and its value, as it is in the document.
type Member struct {
	Key   string
	Value []byte
	// Elements are the values of the array Value, for a member
	// SplitMembers was asked to split (nil otherwise).
	Elements [][]byte
}

var errShape = errors.New("not the JSON value expected")

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// structural marks the bytes valueEnd stops at inside an object or array.
var structural = func() (t [256]bool) {
	for _, c := range `"{}[]` {
		t[c] = true
	}
	return t
}()

// valueEnd returns the index just past the value starting at data[i].
func valueEnd(data []byte, i int) (int, error) {
	if i >= len(data) {
		return 0, errShape
	}
	switch data[i] {
	case '"':
		j, _ := stringEnd(data, i)
		return j + 1, nil
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			for j < len(data) && !structural[data[j]] {
				j++
			}
			if j >= len(data) {
				break
			}
			switch data[j] {
			case '"':
				j, _ = stringEnd(data, j)
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errShape
	}
	j := i
	for j < len(data) {
		switch data[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j, nil
		}
		j++
	}
	return j, nil
}

// Members returns the keys of the JSON object data, in order, with their
// values; an error when data is not an object.
func Members(data []byte) ([]Member, error) { return SplitMembers(data, nil) }

// SplitMembers is Members that also splits, in the same pass, the value of
// each member whose key split accepts into its Elements; an error when data
// is not an object or such a value is not an array.
func SplitMembers(data []byte, split func(key string) bool) ([]Member, error) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, errShape
	}
	var out []Member
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return out, nil
	}
	for i < len(data) {
		if data[i] != '"' {
			return nil, errShape
		}
		j, escaped := stringEnd(data, i)
		if j <= i { // unterminated: not a checked document
			return nil, errShape
		}
		key := string(data[i+1 : j])
		if escaped || !utf8.ValidString(key) { // decoded as every reader decodes it
			if err := json.Unmarshal(data[i:j+1], &key); err != nil {
				return nil, errShape
			}
		}
		i = skipSpace(data, j+1)
		if i >= len(data) || data[i] != ':' {
			return nil, errShape
		}
		i = skipSpace(data, i+1)
		m := Member{Key: key}
		var end int
		var err error
		if split != nil && split(key) {
			m.Elements, end, err = elementsAt(data, i)
		} else {
			end, err = valueEnd(data, i)
		}
		if err != nil {
			return nil, err
		}
		m.Value = data[i:end]
		out = append(out, m)
		i = skipSpace(data, end)
		if i >= len(data) {
			return nil, errShape
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return out, nil
		default:
			return nil, errShape
		}
	}
	return nil, errShape
}

// Elements returns the values of the JSON array data, in order; an error
// when data is not an array.
func Elements(data []byte) ([][]byte, error) {
	i := skipSpace(data, 0)
	out, end, err := elementsAt(data, i)
	if err != nil {
		return nil, err
	}
	if skipSpace(data, end) != len(data) {
		return nil, errShape
	}
	return out, nil
}

// elementsAt returns the values of the JSON array at data[i] and the index
// just past it.
func elementsAt(data []byte, i int) ([][]byte, int, error) {
	if i >= len(data) || data[i] != '[' {
		return nil, 0, errShape
	}
	out := [][]byte{}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return out, i + 1, nil
	}
	for i < len(data) {
		end, err := valueEnd(data, i)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, data[i:end])
		i = skipSpace(data, end)
		if i >= len(data) {
			return nil, 0, errShape
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case ']':
			return out, i + 1, nil
		default:
			return nil, 0, errShape
		}
	}
	return nil, 0, errShape
}

// StringValue returns the JSON string v decoded; false when v is not a
// string.
func StringValue(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if _, escaped := stringEnd(v, 0); !escaped && utf8.Valid(v) {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

// Lookup returns the value of key in the JSON object data, without
// splitting the rest; false when data is not an object or has no such key.
func Lookup(data []byte, key string) ([]byte, bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false
	}
	i = skipSpace(data, i+1)
	for i < len(data) && data[i] == '"' {
		j, escaped := stringEnd(data, i)
		if j <= i { // unterminated: not a checked document
			return nil, false
		}
		k := data[i+1 : j]
		match := !escaped && utf8.Valid(k) && string(k) == key
		if !match && (escaped || !utf8.Valid(k)) {
			var s string
			match = json.Unmarshal(data[i:j+1], &s) == nil && s == key
		}
		i = skipSpace(data, j+1)
		if i >= len(data) || data[i] != ':' {
			return nil, false
		}
		i = skipSpace(data, i+1)
		end, err := valueEnd(data, i)
		if err != nil {
			return nil, false
		}
		if match {
			return data[i:end], true
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ',' {
			return nil, false
		}
		i = skipSpace(data, i+1)
	}
	return nil, false
}
