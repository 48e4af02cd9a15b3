package identity_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mcpca/mcpca/identity"
)

// der builds DER with cryptobyte for hand-made test vectors.
func der(f func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	f(&b)
	return b.BytesOrPanic()
}

func str(tag cbasn1.Tag, s string) func(b *cryptobyte.Builder) {
	return func(b *cryptobyte.Builder) {
		b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
	}
}

func seq(items ...func(b *cryptobyte.Builder)) func(b *cryptobyte.Builder) {
	return func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, it := range items {
				it(b)
			}
		})
	}
}

func utf8s(s string) func(b *cryptobyte.Builder) { return str(cbasn1.UTF8String, s) }

func pair(k, v string) func(b *cryptobyte.Builder) { return seq(utf8s(k), utf8s(v)) }

func nRoles(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "r" + strings.Repeat("x", i)
	}
	return out
}

func nAttrs(n int) map[string]string {
	out := map[string]string{}
	for i := range n {
		out["k"+strings.Repeat("x", i)] = "v"
	}
	return out
}

func TestRolesRoundTrip(t *testing.T) {
	for _, roles := range [][]string{
		nil,
		{"reader"},
		{"admin", "reader", "a.b-c_d", strings.Repeat("z", 64)},
		nRoles(identity.MaxRoles),
	} {
		enc, err := identity.EncodeRoles(roles)
		if err != nil {
			t.Fatalf("EncodeRoles(%q): %v", roles, err)
		}
		got, err := identity.DecodeRoles(enc)
		if err != nil {
			t.Fatalf("DecodeRoles: %v", err)
		}
		if len(got) != len(roles) || (len(roles) > 0 && !reflect.DeepEqual(got, roles)) {
			t.Fatalf("round trip: got %q, want %q", got, roles)
		}
	}
}

func TestRolesEncodingIsStable(t *testing.T) {
	enc, err := identity.EncodeRoles([]string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x30, 0x06, 0x0c, 0x01, 'a', 0x0c, 0x01, 'b'}
	if !reflect.DeepEqual(enc, want) {
		t.Fatalf("EncodeRoles = % x, want % x", enc, want)
	}
}

func TestAttributesRoundTrip(t *testing.T) {
	for _, attrs := range []map[string]string{
		{},
		{"team": "search", "env": "prod", "empty": ""},
		{"unicode": "żółć ✓", strings.Repeat("k", 64): strings.Repeat("v", 256)},
		nAttrs(identity.MaxAttributes),
	} {
		enc, err := identity.EncodeAttributes(attrs)
		if err != nil {
			t.Fatalf("EncodeAttributes: %v", err)
		}
		got, err := identity.DecodeAttributes(enc)
		if err != nil {
			t.Fatalf("DecodeAttributes: %v", err)
		}
		if !reflect.DeepEqual(got, attrs) {
			t.Fatalf("round trip: got %q, want %q", got, attrs)
		}
	}
}

func TestAttributesEncodingIsSorted(t *testing.T) {
	a, _ := identity.EncodeAttributes(map[string]string{"b": "2", "a": "1"})
	b := der(seq(pair("a", "1"), pair("b", "2")))
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("EncodeAttributes = % x, want % x", a, b)
	}
}

func TestPrintableStringAccepted(t *testing.T) {
	roles, err := identity.DecodeRoles(der(seq(str(cbasn1.PrintableString, "reader"), utf8s("writer"))))
	if err != nil || !reflect.DeepEqual(roles, []string{"reader", "writer"}) {
		t.Fatalf("DecodeRoles = %q, %v", roles, err)
	}
	attrs, err := identity.DecodeAttributes(der(seq(seq(str(cbasn1.PrintableString, "team"), str(cbasn1.PrintableString, "Search Team (EU)")))))
	if err != nil || attrs["team"] != "Search Team (EU)" {
		t.Fatalf("DecodeAttributes = %q, %v", attrs, err)
	}
}

func TestEncodeErrors(t *testing.T) {
	long := strings.Repeat("v", identity.MaxValueLen+1)
	for _, tc := range []struct {
		name    string
		err     error
		want    string
		wantErr error
	}{
		{"too many roles", errOf(identity.EncodeRoles(nRoles(33))), "identity: 33 roles, the limit is 32: out of bounds", identity.ErrBounds},
		{"upper case role", errOf(identity.EncodeRoles([]string{"Admin"})), `identity: invalid role "Admin": roles are 1-64 characters of [a-z0-9_.-]: out of bounds`, identity.ErrBounds},
		{"empty role", errOf(identity.EncodeRoles([]string{""})), `identity: invalid role "": roles are 1-64 characters of [a-z0-9_.-]: out of bounds`, identity.ErrBounds},
		{"long role", errOf(identity.EncodeRoles([]string{strings.Repeat("a", 65)})), `identity: invalid role "` + strings.Repeat("a", 65) + `": roles are 1-64 characters of [a-z0-9_.-]: out of bounds`, identity.ErrBounds},
		{"duplicate role", errOf(identity.EncodeRoles([]string{"a", "b", "a"})), `identity: duplicate role "a": out of bounds`, identity.ErrBounds},
		{"too many attributes", errOf(identity.EncodeAttributes(nAttrs(33))), "identity: 33 attributes, the limit is 32: out of bounds", identity.ErrBounds},
		{"bad key", errOf(identity.EncodeAttributes(map[string]string{"a b": "x"})), `identity: invalid attribute key "a b": keys are 1-64 characters of [a-z0-9_.-]: out of bounds`, identity.ErrBounds},
		{"oversized value", errOf(identity.EncodeAttributes(map[string]string{"k": long})), `identity: attribute "k": value is 257 bytes, the limit is 256: out of bounds`, identity.ErrBounds},
		{"invalid utf-8", errOf(identity.EncodeAttributes(map[string]string{"k": "\xff"})), `identity: attribute "k": value is not valid UTF-8: out of bounds`, identity.ErrBounds},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertErr(t, tc.err, tc.want, tc.wantErr)
		})
	}
}

func TestDecodeRolesErrors(t *testing.T) {
	valid := der(seq(utf8s("reader"), utf8s("writer")))
	many := make([]func(*cryptobyte.Builder), 33)
	for i := range many {
		many[i] = utf8s(nRoles(33)[i])
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		want    string
		wantErr error
	}{
		{"empty input", nil, "identity: roles extension: not a DER SEQUENCE OF UTF8String: malformed extension", identity.ErrMalformedExtension},
		{"truncated", valid[:len(valid)-2], "identity: roles extension: not a DER SEQUENCE OF UTF8String: malformed extension", identity.ErrMalformedExtension},
		{"trailing bytes", append(append([]byte{}, valid...), 0), "identity: roles extension: not a DER SEQUENCE OF UTF8String: malformed extension", identity.ErrMalformedExtension},
		{"not a sequence", der(utf8s("reader")), "identity: roles extension: not a DER SEQUENCE OF UTF8String: malformed extension", identity.ErrMalformedExtension},
		{"SET instead of SEQUENCE", []byte{0x31, 0x03, 0x0c, 0x01, 'a'}, "identity: roles extension: not a DER SEQUENCE OF UTF8String: malformed extension", identity.ErrMalformedExtension},
		{"non-minimal length", []byte{0x30, 0x81, 0x03, 0x0c, 0x01, 'a'}, "identity: roles extension: not a DER SEQUENCE OF UTF8String: malformed extension", identity.ErrMalformedExtension},
		{"indefinite length", []byte{0x30, 0x80, 0x0c, 0x01, 'a', 0, 0}, "identity: roles extension: not a DER SEQUENCE OF UTF8String: malformed extension", identity.ErrMalformedExtension},
		{"integer element", der(seq(utf8s("a"), func(b *cryptobyte.Builder) { b.AddASN1Int64(7) })), "identity: roles extension: element 2 is not a UTF8String or PrintableString: malformed extension", identity.ErrMalformedExtension},
		{"IA5String element", der(seq(str(cbasn1.IA5String, "a"))), "identity: roles extension: element 1 is not a UTF8String or PrintableString: malformed extension", identity.ErrMalformedExtension},
		{"bad PrintableString", der(seq(str(cbasn1.PrintableString, "a*b"))), "identity: roles extension: element 1 is not a UTF8String or PrintableString: malformed extension", identity.ErrMalformedExtension},
		{"truncated element", []byte{0x30, 0x03, 0x0c, 0x05, 'a'}, "identity: roles extension: element 1 is not a UTF8String or PrintableString: malformed extension", identity.ErrMalformedExtension},
		{"too many roles", der(seq(many...)), "identity: roles extension holds more than 32 roles: out of bounds", identity.ErrBounds},
		{"invalid role", der(seq(utf8s("Reader"))), `identity: invalid role "Reader": roles are 1-64 characters of [a-z0-9_.-]: out of bounds`, identity.ErrBounds},
		{"oversized role", der(seq(utf8s(strings.Repeat("a", 300)))), `identity: invalid role "` + strings.Repeat("a", 80) + `...": roles are 1-64 characters of [a-z0-9_.-]: out of bounds`, identity.ErrBounds},
		{"duplicate role", der(seq(utf8s("a"), utf8s("a"))), `identity: duplicate role "a": out of bounds`, identity.ErrBounds},
		{"huge input", make([]byte, 70000), "identity: roles extension is 70000 bytes: malformed extension", identity.ErrMalformedExtension},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := identity.DecodeRoles(tc.in)
			if got != nil {
				t.Errorf("DecodeRoles returned %q with an error", got)
			}
			assertErr(t, err, tc.want, tc.wantErr)
		})
	}
}

func TestDecodeAttributesErrors(t *testing.T) {
	valid := der(seq(pair("a", "1"), pair("b", "2")))
	many := make([]func(*cryptobyte.Builder), 33)
	keys := make([]string, 0, 33)
	for k := range nAttrs(33) {
		keys = append(keys, k)
	}
	for i := range many {
		many[i] = pair(keys[i], "v")
	}
	for _, tc := range []struct {
		name    string
		in      []byte
		want    string
		wantErr error
	}{
		{"empty input", nil, "identity: attributes extension: not a DER SEQUENCE OF SEQUENCE: malformed extension", identity.ErrMalformedExtension},
		{"truncated", valid[:len(valid)-1], "identity: attributes extension: not a DER SEQUENCE OF SEQUENCE: malformed extension", identity.ErrMalformedExtension},
		{"trailing bytes", append(append([]byte{}, valid...), 0x30, 0x00), "identity: attributes extension: not a DER SEQUENCE OF SEQUENCE: malformed extension", identity.ErrMalformedExtension},
		{"element not a sequence", der(seq(pair("a", "1"), utf8s("b"))), "identity: attributes extension: element 2 is not a SEQUENCE: malformed extension", identity.ErrMalformedExtension},
		{"missing value", der(seq(seq(utf8s("a")))), "identity: attributes extension: element 1 is not { key UTF8String, value UTF8String }: malformed extension", identity.ErrMalformedExtension},
		{"extra field", der(seq(seq(utf8s("a"), utf8s("1"), utf8s("x")))), "identity: attributes extension: element 1 is not { key UTF8String, value UTF8String }: malformed extension", identity.ErrMalformedExtension},
		{"mistyped value", der(seq(seq(utf8s("a"), func(b *cryptobyte.Builder) { b.AddASN1Boolean(true) }))), "identity: attributes extension: element 1 is not { key UTF8String, value UTF8String }: malformed extension", identity.ErrMalformedExtension},
		{"too many attributes", der(seq(many...)), "identity: attributes extension holds more than 32 attributes: out of bounds", identity.ErrBounds},
		{"duplicate key", der(seq(pair("team", "a"), pair("team", "b"))), `identity: duplicate attribute key "team": out of bounds`, identity.ErrBounds},
		{"invalid key", der(seq(pair("Team", "a"))), `identity: invalid attribute key "Team": keys are 1-64 characters of [a-z0-9_.-]: out of bounds`, identity.ErrBounds},
		{"oversized value", der(seq(pair("k", strings.Repeat("v", 1000)))), `identity: attribute "k": value is 1000 bytes, the limit is 256: out of bounds`, identity.ErrBounds},
		{"invalid utf-8 value", der(seq(pair("k", "a\xc0"))), `identity: attribute "k": value is not valid UTF-8: out of bounds`, identity.ErrBounds},
		{"huge input", make([]byte, 1<<17), "identity: attributes extension is 131072 bytes: malformed extension", identity.ErrMalformedExtension},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := identity.DecodeAttributes(tc.in)
			if got != nil {
				t.Errorf("DecodeAttributes returned %q with an error", got)
			}
			assertErr(t, err, tc.want, tc.wantErr)
		})
	}
}

func errOf(_ []byte, err error) error { return err }

func assertErr(t *testing.T, err error, want string, is error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if err.Error() != want {
		t.Fatalf("error\n got: %s\nwant: %s", err, want)
	}
	if is != nil && !errors.Is(err, is) {
		t.Fatalf("errors.Is(%v, %v) = false", err, is)
	}
}

func TestDecodeDoesNotAliasInput(t *testing.T) {
	in := der(seq(utf8s("reader"), utf8s("writer")))
	roles, err := identity.DecodeRoles(in)
	if err != nil {
		t.Fatal(err)
	}
	ain := der(seq(pair("team", "search")))
	attrs, err := identity.DecodeAttributes(ain)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 'X'
	}
	for i := range ain {
		ain[i] = 'X'
	}
	if !reflect.DeepEqual(roles, []string{"reader", "writer"}) || attrs["team"] != "search" {
		t.Fatalf("decoded values changed with the input: %q %q", roles, attrs)
	}
}
