package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
)

// MinRSABits is the smallest RSA modulus the key policy accepts.
const MinRSABits = 2048

// ErrWeakKey reports a public key outside the key policy (CheckPublicKey).
var ErrWeakKey = errors.New("key not allowed")

// CheckPublicKey applies mcpca's one key policy, the same at the CA (sign,
// rekey) and in the Verifier: ECDSA P-256 or P-384, Ed25519, or RSA of at
// least MinRSABits bits. Anything else (P-224, P-521, RSA-1024, DSA, an
// unknown type) is refused with an error that names the key and wraps
// ErrWeakKey.
func CheckPublicKey(pub crypto.PublicKey) error {
	if err := checkPublicKey(pub); err != nil {
		return errorf("%w", err)
	}
	return nil
}

func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return weakKey("ECDSA " + curveName(k.Curve))
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return nil
		}
		return weakKey(fmt.Sprintf("Ed25519 of %d bytes", len(k)))
	case *rsa.PublicKey:
		if k.N != nil && k.N.BitLen() >= MinRSABits {
			return nil
		}
		bits := 0
		if k.N != nil {
			bits = k.N.BitLen()
		}
		return weakKey(fmt.Sprintf("RSA-%d", bits))
	default:
		return weakKey(fmt.Sprintf("%T", pub))
	}
}

func weakKey(what string) error {
	return fmt.Errorf("%s key: %w: use ECDSA P-256 or P-384, Ed25519, or RSA of at least %d bits", what, ErrWeakKey, MinRSABits)
}

func curveName(c elliptic.Curve) string {
	if c == nil || c.Params() == nil {
		return "unknown curve"
	}
	return c.Params().Name
}
