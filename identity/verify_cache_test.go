package identity

import (
	"crypto/sha256"
	"crypto/x509"
	"testing"
)

// The leaf fingerprint memo: the same certificate (pointer) is hashed once,
// another certificate gets its own fingerprint, and the memo stays bounded.
func TestFingerprintMemo(t *testing.T) {
	a := &x509.Certificate{Raw: []byte("certificate a")}
	b := &x509.Certificate{Raw: []byte("certificate b")}
	c := newVerifyCache(10)
	for range 2 {
		if c.fingerprint(a) != sha256.Sum256(a.Raw) || c.fingerprint(b) != sha256.Sum256(b.Raw) {
			t.Fatal("wrong fingerprint")
		}
	}
	if len(c.fps) != 2 {
		t.Fatalf("memo holds %d entries, want 2", len(c.fps))
	}
	for range 3 * maxFingerprints {
		c.fingerprint(&x509.Certificate{Raw: a.Raw})
	}
	if n := len(c.fps); n > maxFingerprints {
		t.Fatalf("memo holds %d entries, bound %d", n, maxFingerprints)
	}
}
