package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"hash/crc32"
	"strings"
)

// Prefix starts every mcpca API key, so that secret scanners (and people)
// recognise one: "mcpca_ak_" then 43 base64url characters (32 random
// bytes) then 6 base64url characters of checksum (CRC-32 of everything
// before it, as GitHub's tokens carry one), 58 characters in all.
const Prefix = "mcpca_ak_"

const (
	secretBytes = 32
	secretChars = 43 // base64url, unpadded, of 32 bytes
	sumChars    = 6  // base64url, unpadded, of 4 bytes
	// KeyLength is the length of every API key.
	KeyLength = len(Prefix) + secretChars + sumChars
)

// HashSize is the size of a key's hash (SHA-256).
const HashSize = sha256.Size

// Generate returns a new random API key and its hash. The key has 256 bits
// of entropy from crypto/rand; the hash (SHA-256 of the key string) is what
// the CA stores and publishes.
func Generate() (key string, hash [HashSize]byte, err error) {
	var secret [secretBytes]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", hash, errorf("generating a key: %w", err)
	}
	key = format(secret[:])
	return key, Hash(key), nil
}

func format(secret []byte) string {
	var b strings.Builder
	b.Grow(KeyLength)
	b.WriteString(Prefix)
	b.WriteString(base64.RawURLEncoding.EncodeToString(secret))
	b.WriteString(checksum(b.String()))
	return b.String()
}

func checksum(body string) string {
	s := crc32.ChecksumIEEE([]byte(body))
	return base64.RawURLEncoding.EncodeToString([]byte{byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)})
}

// Hash is the SHA-256 of the key string: a plain hash, not a password hash.
// Slow hashes (bcrypt, argon2) protect low-entropy secrets against guessing;
// a key holds 256 random bits, so no guess ever finds one from its hash, and
// a fast hash keeps verification within microseconds.
func Hash(key string) [HashSize]byte { return sha256.Sum256([]byte(key)) }

// EncodeHash is the base64url (unpadded) form of a hash, as the key set
// carries it.
func EncodeHash(h [HashSize]byte) string { return base64.RawURLEncoding.EncodeToString(h[:]) }

// DecodeHash reads EncodeHash's form.
func DecodeHash(s string) ([HashSize]byte, error) {
	var h [HashSize]byte
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != HashSize {
		return h, errorf("key hash %q is not 32 bytes of base64url", truncate(s))
	}
	copy(h[:], b)
	return h, nil
}

// Check reports whether s has the form of an mcpca API key: the prefix,
// the length, the alphabet and the checksum. It does not say whether the key
// is valid; a Verifier does. Errors wrap ErrMalformed and never quote s.
func Check(s string) error {
	if len(s) != KeyLength {
		if !strings.HasPrefix(s, Prefix) {
			return errorf("%w: it does not start with %q", ErrMalformed, Prefix)
		}
		return errorf("%w: %d characters, want %d", ErrMalformed, len(s), KeyLength)
	}
	if s[:len(Prefix)] != Prefix {
		return errorf("%w: it does not start with %q", ErrMalformed, Prefix)
	}
	body := s[:len(Prefix)+secretChars]
	for i := len(Prefix); i < len(s); i++ {
		if !b64(s[i]) {
			return errorf("%w: character %d is not base64url", ErrMalformed, i+1)
		}
	}
	// The last character of 32 bytes in base64url carries 4 bits only;
	// a string with the other 2 set is not the encoding of any secret
	// (and would make two strings for one secret).
	if _, err := base64.RawURLEncoding.Strict().DecodeString(s[len(Prefix):len(body)]); err != nil {
		return errorf("%w: the secret is not canonical base64url", ErrMalformed)
	}
	if checksum(body) != s[len(body):] {
		return errorf("%w: the checksum does not match (mistyped or cut?)", ErrMalformed)
	}
	return nil
}

func b64(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
