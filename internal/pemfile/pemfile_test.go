package pemfile

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func selfSigned(t testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestRoundTrip(t *testing.T) {
	a, key := selfSigned(t)
	b, _ := selfSigned(t)
	keyPEM, err := EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	combined := append(append([]byte("comment before\n"), keyPEM...), EncodeCertificates(a, b)...)
	got, err := ParseCertificates(combined, SkipOthers)
	if err != nil || len(got) != 2 || !got[0].Equal(a) || !got[1].Equal(b) {
		t.Fatalf("SkipOthers: %v %v", got, err)
	}
	if _, err := ParseCertificates(combined, RefuseOthers); err == nil || err.Error() != `PEM block 1 is "PRIVATE KEY", want CERTIFICATE` {
		t.Fatalf("RefuseOthers: %v", err)
	}
	k, err := ParseKey(combined)
	if err != nil || !k.Public().(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Fatalf("ParseKey: %v", err)
	}
	if _, err := ParseCertificates([]byte("nothing"), SkipOthers); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("no certificate: %v", err)
	}
	bad := "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
	if _, err := ParseCertificates([]byte(bad), SkipOthers); err == nil || !strings.HasPrefix(err.Error(), "PEM block 1: x509: ") {
		t.Fatalf("bad DER: %v", err)
	}
	if _, err := ParseKey(EncodeCertificates(a)); err == nil || err.Error() != "no private key found" {
		t.Fatalf("no key: %v", err)
	}
}

// FuzzParse: untrusted PEM never panics, and what parses re-encodes to
// PEM that parses to the same certificates.
func FuzzParse(f *testing.F) {
	c, key := selfSigned(f)
	k, _ := EncodeKey(key)
	f.Add(append(k, EncodeCertificates(c)...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseKey(b)
		certs, err := ParseCertificates(b, SkipOthers)
		if err != nil {
			return
		}
		again, err := ParseCertificates(EncodeCertificates(certs...), RefuseOthers)
		if err != nil || len(again) != len(certs) {
			t.Fatalf("re-encoded certificates do not parse: %v", err)
		}
		for i := range certs {
			if !bytes.Equal(again[i].Raw, certs[i].Raw) {
				t.Fatal("re-encoded certificate differs")
			}
		}
	})
}
