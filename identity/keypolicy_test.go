package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"
)

func TestCheckPublicKey(t *testing.T) {
	ec := func(c elliptic.Curve) *ecdsa.PublicKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return &k.PublicKey
	}
	rsaKey := func(bits int) *rsa.PublicKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return &k.PublicKey
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name string
		key  any
		want string // "" = accepted
	}{
		{"P-256", ec(elliptic.P256()), ""},
		{"P-384", ec(elliptic.P384()), ""},
		{"Ed25519", edPub, ""},
		{"RSA-2048", rsaKey(2048), ""},
		{"P-224", ec(elliptic.P224()), "identity: ECDSA P-224 key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits"},
		{"P-521", ec(elliptic.P521()), "identity: ECDSA P-521 key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits"},
		{"RSA-1024", rsaKey(1024), "identity: RSA-1024 key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits"},
		{"unknown", "not a key", "identity: string key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits"},
	} {
		err := CheckPublicKey(tc.key)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.want || !errors.Is(err, ErrWeakKey) {
			t.Errorf("%s: got %v, want %q (wrapping ErrWeakKey)", tc.name, err, tc.want)
		}
	}
}
