package strictjson

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	josejson "github.com/go-jose/go-jose/v3/json"
)

type inner struct {
	Kind  string            `json:"kind"`
	Roles []string          `json:"roles,omitempty"`
	Attrs map[string]string `json:"attrs,omitempty"`
}

type payload struct {
	Issuer string   `json:"iss"`
	Sub    string   `json:"sub"`
	Exp    int64    `json:"exp"`
	Aud    []string `json:"aud"`
	Inner  *inner   `json:"mcpca,omitempty"`
	Items  []inner  `json:"items,omitempty"`
}

func TestUnmarshalRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"iss":"a","iss":"b"}`, `duplicate key "iss"`},
		{`{"iss":"team-a","ISS":"admin"}`, `keys "iss" and "ISS" differ only in case`},
		{`{"ISS":"admin"}`, `key "ISS" is not "iss": keys are case-sensitive`},
		{`{"ſub":"x"}`, `key "ſub" is not "sub": keys are case-sensitive`},
		{`{"sub":"x","ſub":"y"}`, `keys "sub" and "ſub" differ only in case`},
		{`{"EXP":1}`, `key "EXP" is not "exp": keys are case-sensitive`},
		{`{"mcpca":{"kind":"client","Kind":"server"}}`, `keys "kind" and "Kind" differ only in case`},
		{`{"mcpca":{"KIND":"server"}}`, `key "KIND" in mcpca is not "kind": keys are case-sensitive`},
		{`{"items":[{"kind":"a"},{"Roles":["x"]}]}`, `key "Roles" in items[1] is not "roles": keys are case-sensitive`},
		{`{"mcpca":{"attrs":{"k":"a","k":"b"}}}`, `duplicate key "k"`},
		{`{"unknown":{"x":1,"X":2}}`, `keys "x" and "X" differ only in case`},
		{`{"iss":"a"} {}`, `data after the top-level value`},
		{`{"iss":"a"`, `unexpected end of JSON input`},
		{`{"exp":1.5}`, `json: cannot unmarshal number 1.5 into Go struct field payload.exp of type int64`},
		{strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), `nested deeper than 32 levels`},
	} {
		var p payload
		err := Unmarshal([]byte(tc.in), &p)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v, want %q", tc.in, err, tc.want)
		}
	}
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i <= MaxKeys; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + strings.Repeat("x", i) + `":1`)
	}
	b.WriteString("}")
	var m map[string]int
	if err := Unmarshal([]byte(b.String()), &m); err == nil || err.Error() != "an object has more than 256 keys" {
		t.Errorf("too many keys: %v", err)
	}
}

func TestUnmarshalAccepts(t *testing.T) {
	in := `{"iss":"team-a","sub":"spiffe://td/client/a","exp":1700000000,"aud":["https://ca/1.0/sign"],"jti":"x","JTI2":"unknown keys are kept out",` +
		`"mcpca":{"kind":"client","roles":["reader"],"attrs":{"team":"a","Team2":"b"}}}`
	var p payload
	if err := Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	var q payload
	if err := josejson.Unmarshal([]byte(in), &q); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) || p.Issuer != "team-a" || p.Inner.Attrs["team"] != "a" {
		t.Fatalf("strict %+v, go-jose %+v", p, q)
	}
}

// FuzzUnmarshal holds Unmarshal to its promise: it never panics, and
// whatever it accepts, go-jose's case-sensitive reader (the one step-ca
// verifies tokens with) decodes to the same value.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		`{"iss":"a","sub":"b","exp":1,"aud":["x"],"mcpca":{"kind":"client","roles":["r"],"attrs":{"k":"v"}}}`,
		`{"iss":"a","ISS":"b"}`, `{"ſub":"x"}`, `{"items":[{"kind":"a"}]}`, `{"exp":1e3}`, `[]`, `null`,
		`{"mcpca":null,"aud":null}`, `{"\u0069ss":"a"}`, `{"iss":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p payload
		if err := Unmarshal(data, &p); err != nil {
			return
		}
		var q payload
		if err := josejson.Unmarshal(data, &q); err != nil {
			t.Fatalf("strict accepted %q, go-jose refused it: %v", data, err)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("%q: strict %+v, go-jose %+v", data, p, q)
		}
	})
}

// FuzzFastCheck holds the fast path to the full reader: it never vouches
// for a document the full reader refuses (whatever the target type).
func FuzzFastCheck(f *testing.F) {
	for _, s := range []string{
		`{"a":1,"A":2}`, `{"a":{"b":1,"b":2}}`, `[{"x":1},{"x":1}]`, `{"\u0061":1,"a":2}`, `{"ſ":1,"S":2}`,
		`{"k":1,"\u212a":2}`, `{"a":"\"b\":1","b":2}`, `{"a":[{"a":1}],"b":{"a":1}}`, `"x"`, `1`, `{} []`,
		strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth), strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast := fastCheck(data)
		if fast && !json.Valid(data) {
			t.Fatalf("fast path vouched for %q, which json.Valid refuses", data)
		}
		if utf8.Valid(data) && fast != twoPassCheck(data) {
			t.Fatalf("fast path says %v of %q, json.Valid and the key scan %v", fast, data, !fast)
		}
		if !fast {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if _, err := readValue(dec, 0); err != nil {
			t.Fatalf("fast path vouched for %q, the full reader refuses it: %v", data, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			t.Fatalf("fast path vouched for %q, which has data after its value", data)
		}
	})
}

// twoPassCheck is what fastCheck was before it checked the grammar
// itself: json.Valid, then a scan of the keys. FuzzFastCheck holds the one
// pass to it.
func twoPassCheck(data []byte) bool {
	if !json.Valid(data) {
		return false
	}
	type frame struct {
		obj       bool
		expectKey bool
		first     int
	}
	var stack []frame
	var keys [][]byte
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

// TestFastCheckGrammar holds the one-pass check to json.Valid on the
// corners of JSON's grammar.
func TestFastCheckGrammar(t *testing.T) {
	for _, in := range []string{
		``, ` `, `0`, `-0`, `01`, `-`, `1.`, `.5`, `1.5`, `1e`, `1e+`, `1E-7`, `1e07`, `-01`, `+1`, `2.0e3`, `1 2`,
		`true`, `tru`, `truex`, `false`, `null`, `nul`, `NaN`, `"a"`, `"a`, `"\"`, `"\u00e9"`, `"\u00g9"`, `"\u00e"`,
		`"\x"`, `"\/"`, "\"\x01\"", "\"\x7f\"", "\"\xff\"", `"\\"`, `"\ud800"`, `[]`, `[ ]`, `[1,]`, `[,1]`, `[1 2]`, `[1,2]`,
		`{}`, `{ }`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,"a":1}`, `{"a" : 1 , "b" : [ true , null ] }`, `{1:2}`, `{"a":1]`,
		`[1}`, `[[[]]]`, `[[[]]`, `{"a":{"b":{}}}`, " \t\r\n[1]\n", "\v1", `[1]]`, `{"a":1}}`, `"\u12345"`,
	} {
		want := json.Valid([]byte(in))
		if got := fastCheck([]byte(in)); got != want {
			t.Errorf("fastCheck(%q) = %v, json.Valid = %v", in, got, want)
		}
	}
}

func TestFastCheck(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}`: true,
		`{"a":1,"A":2}`:         false,
		`{"\u0061":1,"a":2}`:    false,
		`{"k":1,"\u212a":2}`:    false,
		`{"a":"\"b\":1","b":2}`: true,
		`{"a":1}x`:              false,
	} {
		if got := fastCheck([]byte(in)); got != want {
			t.Errorf("fastCheck(%s) = %v, want %v", in, got, want)
		}
	}
}
