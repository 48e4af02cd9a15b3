// Package strictjson reads signed JSON (a token's payload) so that no two
// JSON readers can take it to mean different things.
//
// encoding/json matches object keys to struct fields case-insensitively
// (with Unicode simple folding: "ſub" is "sub", the Kelvin sign is "k") and
// keeps the last of duplicate keys; go-jose, which verifies the signature of
// the same bytes inside step-ca, matches keys exactly. A payload carrying
// both "iss" and "ISS" was therefore one token to step-ca and another to
// mcpca. Unmarshal refuses what could be read two ways:
//
//   - two keys of one object that are equal or differ only in case
//     (anywhere in the document, at any depth);
//   - a key that differs only in case from a field of the target struct;
//   - documents nested deeper than MaxDepth, or objects of more than
//     MaxKeys keys (a token is small; bounds keep the checks linear).
//
// What it accepts, encoding/json and a case-sensitive reader decode alike.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of arrays and objects.
const MaxDepth = 32

// MaxKeys bounds the keys of one object.
const MaxKeys = 256

// Check applies the checks above to data, for a caller that only needs to
// know that every reader reads it alike (and decodes it itself, with any
// reader).
func Check(data []byte) error {
	if fastCheck(data) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if _, err := readValue(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the top-level value")
	}
	return nil
}

// CheckMembers is Check, then Members when data is an object (the members
// nil otherwise), in one pass over the bytes when data is fine.
func CheckMembers(data []byte) ([]Member, error) {
	top, _, _, err := CheckSplit(data, "", nil)
	return top, err
}

// CheckSplit is CheckMembers that also returns, from the same pass, the
// members of data's member nest, when its value is an object (found says
// so), as SplitMembers(value, split) returns them: a member whose key is
// one of split and whose value is an array has its Elements (nest "":
// none). It reads a JSON-RPC message and its result at once.
func CheckSplit(data []byte, nest string, split []string) (top, nested []Member, found bool, err error) {
	sp := &splitter{top: make([]Member, 0, 8), nest: nest, split: split}
	if fastCheckTop(data, sp) {
		if len(sp.top) == 0 {
			sp.top = nil
		}
		return sp.top, sp.nested, sp.found, nil
	}
	if err := Check(data); err != nil {
		return nil, nil, false, err
	}
	// The fast path was unsure, the full reader was not: split the
	// checked document.
	if top, err = Members(data); err != nil {
		return nil, nil, false, nil
	}
	for _, m := range top {
		if nest != "" && m.Key == nest {
			if nested, err = SplitMembers(m.Value, func(k string) bool { return slices.Contains(split, k) }); err == nil {
				found = true
			} else if nested, err = Members(m.Value); err == nil {
				found = true
				for i := range nested { // as fastCheckTop: split the arrays
					if slices.Contains(split, nested[i].Key) {
						nested[i].Elements, _ = Elements(nested[i].Value)
					}
				}
			}
		}
	}
	return top, nested, found, nil
}

// Unmarshal decodes data into v (a pointer) after the checks above. Errors
// name the offending key and carry no prefix (this package is internal: the
// caller's exported boundary adds its own), e.g. `duplicate key "exp"`.
func Unmarshal(data []byte, v any) error {
	if fastCheck(data) && !needsTree(reflect.TypeOf(v)) {
		return json.Unmarshal(data, v)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tree, err := readValue(dec, 0)
	if err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the top-level value")
	}
	if err := checkCase(tree, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return err
	}
	return nil
}

// object keeps an object's keys in order, for checkCase.
type object struct {
	keys []string
	vals []any
}

// readValue reads one JSON value, refusing duplicate or case-variant keys.
func readValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if depth >= MaxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", MaxDepth)
	}
	switch d {
	case '[':
		var arr []any
		for dec.More() {
			v, err := readValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, syntaxError(err)
		}
		return arr, nil
	case '{':
		obj := &object{}
		seen := map[string]string{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, syntaxError(err)
			}
			k, ok := kt.(string)
			if !ok {
				return nil, fmt.Errorf("object key is not a string")
			}
			if len(obj.keys) == MaxKeys {
				return nil, fmt.Errorf("an object has more than %d keys", MaxKeys)
			}
			f := fold(k)
			if prev, dup := seen[f]; dup {
				if prev == k {
					return nil, fmt.Errorf("duplicate key %q", k)
				}
				return nil, fmt.Errorf("keys %q and %q differ only in case", prev, k)
			}
			seen[f] = k
			v, err := readValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			obj.keys = append(obj.keys, k)
			obj.vals = append(obj.vals, v)
		}
		if _, err := dec.Token(); err != nil {
			return nil, syntaxError(err)
		}
		return obj, nil
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

func syntaxError(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("unexpected end of JSON input")
	}
	return err
}

// fold maps s to a canonical member of its case-folding class: two strings
// fold alike exactly when strings.EqualFold says they are equal.
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r == utf8.RuneError {
			b.WriteRune(r)
			continue
		}
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		b.WriteRune(min)
	}
	return b.String()
}

// checkCase refuses keys that encoding/json would match to a struct field
// of t only by folding case.
func checkCase(v any, t reflect.Type, path string) error {
	if t == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch val := v.(type) {
	case *object:
		switch t.Kind() {
		case reflect.Struct:
			fields := jsonFields(t)
			for i, k := range val.keys {
				ft, exact := fields[k]
				if !exact {
					for name := range fields {
						if strings.EqualFold(name, k) {
							return fmt.Errorf("key %q%s is not %q: keys are case-sensitive", k, at(path), name)
						}
					}
					continue
				}
				if err := checkCase(val.vals[i], ft, path+"."+k); err != nil {
					return err
				}
			}
		case reflect.Map:
			for i, k := range val.keys {
				if err := checkCase(val.vals[i], t.Elem(), path+"."+k); err != nil {
					return err
				}
			}
		}
	case []any:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, e := range val {
				if err := checkCase(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " in " + strings.TrimPrefix(path, ".")
}

// jsonFields maps the JSON names of t's exported fields (as encoding/json
// names them) to their types. Embedded structs are not followed: the types
// read with this package have none.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := make(map[string]reflect.Type, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			n, _, _ := strings.Cut(tag, ",")
			if n == "-" {
				continue
			}
			if n != "" {
				name = n
			}
		}
		m[name] = f.Type
	}
	return m
}
