package ca_test

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// step-ca's router serves /re-sign, its renewal, which trusts whatever
// certificate the TLS peer presented: mcpca's TLS layer only requests client
// certificates (its own handlers verify them), so a self-signed certificate
// for any identity was renewed into one signed by the CA. Only step-ca's
// read-only endpoints reach its router now.
func TestStepCAEndpointsBeyondTheAPIAreNotServed(t *testing.T) {
	c, _ := startCA(t)
	key := mustKey(t)
	u, _ := url.Parse("spiffe://acme.test/client/ceo")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(777), URIs: []*url.URL{u},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	forged := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	for _, p := range []string{"/1.0/re-sign", "/re-sign", "/1.0/ssh/sign", "/sign-ssh", "/ssh/renew", "/1.0/ssh/config"} {
		status, msg := postWithCert(t, c, p, forged, "{}")
		want := "ca: POST " + p + " is not served by this CA: it serves POST /1.0/sign, /1.0/renew, /1.0/rekey, /1.0/revoke, /1.0/oauth/token and /1.0/apikeys"
		if status != http.StatusNotFound || msg != want {
			t.Errorf("%s: %d %q, want 404 %q", p, status, msg, want)
		}
	}
	// The renewal endpoint proper verifies the chain.
	status, msg := postWithCert(t, c, "/1.0/renew", forged, "{}")
	if status != 401 || msg != "ca: renew needs the current certificate as the TLS client certificate: ca: the certificate (serial 777) is not issued by this CA" {
		t.Fatalf("renew: %d %q", status, msg)
	}
	// The read-only endpoints still answer, with and without /1.0.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Roots}}}
	defer hc.CloseIdleConnections()
	for _, p := range []string{"/roots", "/1.0/roots", "/crl", "/1.0/crl", "/health", "/1.0/intermediates.pem", "/version"} {
		resp, err := hc.Get(c.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 { // step-ca answers /roots with 201
			t.Errorf("GET %s: %d", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/ssh/roots", "/1.0/ssh/hosts", "/nothing"} {
		resp, err := hc.Get(c.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}
