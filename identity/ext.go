package identity

import (
	"sort"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Bounds of the identity contract, enforced when encoding and when decoding.
const (
	MaxRoles          = 32
	MaxAttributes     = 32
	MaxKeyLen         = 64  // role names and attribute keys: [a-z0-9_.-]{1,64}
	MaxValueLen       = 256 // attribute values: valid UTF-8, at most 256 bytes
	maxExtensionBytes = 64 << 10
)

// Attribute is one key/value pair of the attributes extension.
type Attribute struct {
	Key   string
	Value string
}

// ValidateRole reports whether r is a valid role name: [a-z0-9_.-]{1,64}.
func ValidateRole(r string) error {
	if !validKey(r) {
		return errorf("invalid role %q: roles are 1-%d characters of [a-z0-9_.-]: %w", truncate(r), MaxKeyLen, ErrBounds)
	}
	return nil
}

// ValidateAttribute reports whether key and value are within the contract:
// key [a-z0-9_.-]{1,64}, value valid UTF-8 of at most 256 bytes.
func ValidateAttribute(key, value string) error {
	if !validKey(key) {
		return errorf("invalid attribute key %q: keys are 1-%d characters of [a-z0-9_.-]: %w", truncate(key), MaxKeyLen, ErrBounds)
	}
	if len(value) > MaxValueLen {
		return errorf("attribute %q: value is %d bytes, the limit is %d: %w", key, len(value), MaxValueLen, ErrBounds)
	}
	if !utf8.ValidString(value) {
		return errorf("attribute %q: value is not valid UTF-8: %w", key, ErrBounds)
	}
	return nil
}

// ValidateRoles checks the count, each name and uniqueness.
func ValidateRoles(roles []string) error {
	if len(roles) > MaxRoles {
		return errorf("%d roles, the limit is %d: %w", len(roles), MaxRoles, ErrBounds)
	}
	for i, r := range roles {
		if err := ValidateRole(r); err != nil {
			return err
		}
		for _, prev := range roles[:i] {
			if prev == r {
				return errorf("duplicate role %q: %w", r, ErrBounds)
			}
		}
	}
	return nil
}

// ValidateAttributes checks the count, each pair and the uniqueness of keys.
func ValidateAttributes(attrs map[string]string) error {
	if len(attrs) > MaxAttributes {
		return errorf("%d attributes, the limit is %d: %w", len(attrs), MaxAttributes, ErrBounds)
	}
	for k, v := range attrs {
		if err := ValidateAttribute(k, v); err != nil {
			return err
		}
	}
	return nil
}

// EncodeRoles returns the DER value of the roles extension:
// SEQUENCE OF UTF8String, in the order given.
func EncodeRoles(roles []string) ([]byte, error) {
	if err := ValidateRoles(roles); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, r := range roles {
			b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(r)) })
		}
	})
	return b.Bytes()
}

// EncodeAttributes returns the DER value of the attributes extension:
// SEQUENCE OF SEQUENCE { key UTF8String, value UTF8String }, sorted by key so
// that equal maps always encode to equal bytes.
func EncodeAttributes(attrs map[string]string) ([]byte, error) {
	if err := ValidateAttributes(attrs); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, k := range keys {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(k)) })
				b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(attrs[k])) })
			})
		}
	})
	return b.Bytes()
}

// DecodeRoles parses the DER value of the roles extension. It accepts
// UTF8String and PrintableString elements and enforces every bound; trailing
// bytes, other tags, duplicates and over-long input are errors.
func DecodeRoles(der []byte) ([]string, error) {
	if len(der) > maxExtensionBytes {
		return nil, errorf("roles extension is %d bytes: %w", len(der), ErrMalformedExtension)
	}
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errorf("roles extension: not a DER SEQUENCE OF UTF8String: %w", ErrMalformedExtension)
	}
	// One string holds every element: the roles are substrings of it.
	st := stringTable{der: der, all: string(der)}
	var roles []string
	for !seq.Empty() {
		if len(roles) == MaxRoles {
			return nil, errorf("roles extension holds more than %d roles: %w", MaxRoles, ErrBounds)
		}
		s, ok := st.read(&seq)
		if !ok {
			return nil, errorf("roles extension: element %d is not a UTF8String or PrintableString: %w", len(roles)+1, ErrMalformedExtension)
		}
		if err := ValidateRole(s); err != nil {
			return nil, err
		}
		for _, prev := range roles {
			if prev == s {
				return nil, errorf("duplicate role %q: %w", s, ErrBounds)
			}
		}
		roles = append(roles, s)
	}
	return roles, nil
}

// DecodeAttributes parses the DER value of the attributes extension, with the
// same rules as DecodeRoles; a duplicate key is an error.
func DecodeAttributes(der []byte) (map[string]string, error) {
	if len(der) > maxExtensionBytes {
		return nil, errorf("attributes extension is %d bytes: %w", len(der), ErrMalformedExtension)
	}
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errorf("attributes extension: not a DER SEQUENCE OF SEQUENCE: %w", ErrMalformedExtension)
	}
	st := stringTable{der: der, all: string(der)}
	attrs := map[string]string{}
	for n := 1; !seq.Empty(); n++ {
		if len(attrs) == MaxAttributes {
			return nil, errorf("attributes extension holds more than %d attributes: %w", MaxAttributes, ErrBounds)
		}
		var pair cryptobyte.String
		if !seq.ReadASN1(&pair, cbasn1.SEQUENCE) {
			return nil, errorf("attributes extension: element %d is not a SEQUENCE: %w", n, ErrMalformedExtension)
		}
		k, ok1 := st.read(&pair)
		v, ok2 := st.read(&pair)
		if !ok1 || !ok2 || !pair.Empty() {
			return nil, errorf("attributes extension: element %d is not { key UTF8String, value UTF8String }: %w", n, ErrMalformedExtension)
		}
		if err := ValidateAttribute(k, v); err != nil {
			return nil, err
		}
		if _, dup := attrs[k]; dup {
			return nil, errorf("duplicate attribute key %q: %w", k, ErrBounds)
		}
		attrs[k] = v
	}
	return attrs, nil
}

// stringTable turns subslices of der into substrings of all (string(der)),
// so that decoding costs one string allocation however many elements there
// are.
type stringTable struct {
	der []byte
	all string
}

// read reads one UTF8String or PrintableString from s, a subslice of t.der.
func (t *stringTable) read(s *cryptobyte.String) (string, bool) {
	var v cryptobyte.String
	var tag cbasn1.Tag
	if !s.ReadAnyASN1(&v, &tag) {
		return "", false
	}
	switch tag {
	case cbasn1.UTF8String:
	case cbasn1.PrintableString:
		for _, c := range v {
			if !isPrintable(c) {
				return "", false
			}
		}
	default:
		return "", false
	}
	// v is der[off:off+len(v)]: reslicing keeps cap(der)-cap(v) == off.
	off := cap(t.der) - cap(v)
	if off < 0 || off+len(v) > len(t.all) {
		return string(v), true // not a subslice of der; never happens
	}
	return t.all[off : off+len(v)], true
}

func isPrintable(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == ' ' || c == '\'' || c == '(' || c == ')' || c == '+' || c == ',' ||
		c == '-' || c == '.' || c == '/' || c == ':' || c == '=' || c == '?'
}

func validKey(s string) bool {
	if len(s) == 0 || len(s) > MaxKeyLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// truncate shortens untrusted strings quoted in error messages.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
