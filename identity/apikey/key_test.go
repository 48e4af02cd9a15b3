package apikey_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/mcpca/mcpca/identity/apikey"
)

func TestGenerateAndCheck(t *testing.T) {
	k, h, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k, "mcpca_ak_") || len(k) != apikey.KeyLength || apikey.KeyLength != 58 {
		t.Fatalf("key %q (%d characters)", k, len(k))
	}
	if err := apikey.Check(k); err != nil {
		t.Fatal(err)
	}
	if apikey.Hash(k) != h {
		t.Fatal("Generate's hash is not Hash of the key")
	}
	if d, err := apikey.DecodeHash(apikey.EncodeHash(h)); err != nil || d != h {
		t.Fatalf("hash round trip: %v", err)
	}
	k2, _, _ := apikey.Generate()
	if k2 == k {
		t.Fatal("two keys alike")
	}

	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	// The 43rd secret character carries 4 bits: 'B' sets a low bit.
	last := len(apikey.Prefix) + 42
	nonCanonical := k[:last] + "B" + k[last+1:]
	if k[last] == 'B' {
		nonCanonical = k[:last] + "C" + k[last+1:]
	}
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", `apikey: not an mcpca API key: it does not start with "mcpca_ak_"`},
		{"other prefix", "ghp_" + k[4:], `apikey: not an mcpca API key: it does not start with "mcpca_ak_"`},
		{"short", k[:50], "apikey: not an mcpca API key: 50 characters, want 58"},
		{"bad character", k[:20] + "!" + k[21:], "apikey: not an mcpca API key: character 21 is not base64url"},
		{"mistyped", flip(k, 30), "apikey: not an mcpca API key: the checksum does not match (mistyped or cut?)"},
		{"non-canonical", nonCanonical, "apikey: not an mcpca API key: the secret is not canonical base64url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := apikey.Check(tc.in)
			if err == nil || err.Error() != tc.want || !errors.Is(err, apikey.ErrMalformed) {
				t.Fatalf("Check: %v, want %q", err, tc.want)
			}
			if len(tc.in) > 12 && strings.Contains(err.Error(), tc.in[9:]) {
				t.Fatal("the error quotes the key")
			}
		})
	}
}

func TestValidNameAndAudience(t *testing.T) {
	for _, n := range []string{"ci", "ci-bot.2", "a_b"} {
		if !apikey.ValidName(n) {
			t.Errorf("%q refused", n)
		}
	}
	for _, n := range []string{"", "-x", "CI", "a b", strings.Repeat("a", 65)} {
		if apikey.ValidName(n) {
			t.Errorf("%q accepted", n)
		}
	}
	if err := apikey.CheckAudience("https://mcp.example.com/mcp"); err != nil {
		t.Error(err)
	}
	for _, a := range []string{"http://x/mcp", "/mcp", "https://x/mcp#f", "https://u@x/"} {
		if err := apikey.CheckAudience(a); err == nil {
			t.Errorf("%q accepted", a)
		}
	}
}
