package certname

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"testing"
)

func TestOf(t *testing.T) {
	id, _ := url.Parse("spiffe://acme.test/client/a")
	for _, tc := range []struct {
		c    *x509.Certificate
		want string
	}{
		{nil, "a nil certificate"},
		{&x509.Certificate{URIs: []*url.URL{id}, Subject: pkix.Name{CommonName: "a"}}, "spiffe://acme.test/client/a"},
		{&x509.Certificate{Subject: pkix.Name{CommonName: "Test CA"}}, `certificate "Test CA"`},
		{&x509.Certificate{Subject: pkix.Name{CommonName: strings.Repeat("x", 70)}}, `certificate "` + strings.Repeat("x", 64) + `..."`},
		{&x509.Certificate{SerialNumber: big.NewInt(0xab)}, "certificate with serial ab"},
	} {
		if got := Of(tc.c); got != tc.want {
			t.Errorf("Of = %q, want %q", got, tc.want)
		}
	}
}
