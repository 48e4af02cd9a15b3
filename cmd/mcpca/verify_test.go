package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/internal/testca"
)

// verifyFixture writes a test PKI's root into dir and returns the CA.
func verifyFixture(t *testing.T) (*testca.CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca := testca.NewCA(t, "acme.test")
	write(t, filepath.Join(dir, "root.pem"), ca.RootsPEM())
	return ca, dir
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyCommand(t *testing.T) {
	ca, dir := verifyFixture(t)
	s := ca.CreateSVID("spiffe://acme.test/client/reporter",
		testca.WithRoles("reader", "auditor"), testca.WithAttributes(map[string]string{"team": "payments", "env": "prod"}))
	write(t, filepath.Join(dir, "reporter.crt"), s.ChainPEM())
	write(t, filepath.Join(dir, "ca.crl"), ca.CreateCRL(testca.Revoked(s.Leaf.SerialNumber)))
	write(t, filepath.Join(dir, "empty.crl"), testca.CRLPEM(ca.CreateCRL()))

	r := ok(t, dir, "verify", "reporter.crt", "--root", "root.pem", "--trust-domain", "acme.test", "--crl", "empty.crl")
	for _, want := range []string{
		"Chain:       OK (2 presented, verified to a root in root.pem, usage client)\n",
		"SPIFFE ID:   spiffe://acme.test/client/reporter\n",
		"Trust domain: acme.test (required by --trust-domain)\n",
		"Kind:        client\n",
		"Roles:       reader, auditor\n",
		"Attributes:  env=prod, team=payments\n",
		"Serial:      " + s.Leaf.SerialNumber.String() + " (0x" + s.Leaf.SerialNumber.Text(16) + ")\n",
		"Not after:   " + s.Leaf.NotAfter.UTC().Format(time.RFC3339) + "\n",
		"Revocation:  not revoked (CRL number 1 from empty.crl, 0 revoked, next update ",
		"Status:      OK\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	r = ok(t, dir, "verify", "reporter.crt", "--root", "root.pem", "--any-trust-domain")
	if !strings.Contains(r.stdout, "Revocation:  not checked (no --crl)\n") ||
		!strings.Contains(r.stdout, "Trust domain: acme.test (not checked: --any-trust-domain)\n") {
		t.Errorf("without --crl:\n%s", r.stdout)
	}

	// Revoked, through a CRL file.
	r = fails(t, dir, fmt.Sprintf("mcpca: reporter.crt: verification failed: identity: spiffe://acme.test/client/reporter: certificate (serial %s) is revoked since ", s.Leaf.SerialNumber.Text(16)),
		"verify", "reporter.crt", "--root", "root.pem", "--trust-domain", "acme.test", "--crl", "ca.crl")
	if r.code != 1 || r.stdout != "" {
		t.Errorf("exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestVerifyCommandCRLURL(t *testing.T) {
	ca, dir := verifyFixture(t)
	s := ca.CreateSVID("spiffe://acme.test/server/files", testca.WithDNSNames("files.acme.test"))
	write(t, filepath.Join(dir, "files.crt"), s.ChainPEM())
	crl := ca.CreateCRL(testca.CRLNumber(7))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/crl" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(crl)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.CreateSVID("spiffe://acme.test/server/ca", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1))).TLS}}
	srv.StartTLS()
	defer srv.Close()

	r := ok(t, dir, "verify", "files.crt", "--root", "root.pem", "--trust-domain", "acme.test", "--crl", srv.URL+"/crl")
	for _, want := range []string{"usage server", "Kind:        server\n", "DNS names:   files.acme.test\n", "Revocation:  not revoked (CRL number 7 from " + srv.URL + "/crl, 0 revoked"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	// The CRL cannot be fetched: fail closed.
	fails(t, dir, "mcpca: files.crt: verification failed: identity: spiffe://acme.test/server/files: revocation status unknown: trust: no CRL loaded from "+srv.URL+"/nope: GET "+srv.URL+"/nope: 404 Not Found",
		"verify", "files.crt", "--root", "root.pem", "--trust-domain", "acme.test", "--crl", srv.URL+"/nope")
	// A server identity checked as a client still passes (servers carry clientAuth).
	ok(t, dir, "verify", "files.crt", "--root", "root.pem", "--trust-domain", "acme.test", "--as", "client")
}

func TestVerifyCommandFailures(t *testing.T) {
	ca, dir := verifyFixture(t)
	now := time.Now()
	other := testca.NewCA(t, "acme.test")
	certs := map[string]*testca.SVID{
		"good.crt":     ca.CreateSVID("spiffe://acme.test/client/a"),
		"expired.crt":  ca.CreateSVID("spiffe://acme.test/client/a", testca.WithValidity(now.Add(-2*time.Hour), now.Add(-time.Hour))),
		"ca.crt":       ca.CreateSVID("spiffe://acme.test/client/a", testca.WithIsCA()),
		"twouri.crt":   ca.CreateSVID("spiffe://acme.test/client/a", testca.WithURIs("spiffe://acme.test/client/b")),
		"critical.crt": ca.CreateSVID("spiffe://acme.test/client/a", testca.WithUnknownCriticalExtension()),
		"eku.crt":      ca.CreateSVID("spiffe://acme.test/client/a", testca.WithExtKeyUsage(x509.ExtKeyUsageServerAuth)),
		"foreign.crt":  other.CreateSVID("spiffe://acme.test/client/a"),
	}
	for name, s := range certs {
		write(t, filepath.Join(dir, name), s.ChainPEM())
	}
	write(t, filepath.Join(dir, "stale.crl"), ca.CreateCRL(testca.ThisUpdate(now.Add(-3*time.Hour)), testca.NextUpdate(now.Add(-2*time.Hour))))
	write(t, filepath.Join(dir, "forged.crl"), other.CreateCRL())
	write(t, filepath.Join(dir, "junk.pem"), []byte("junk"))

	const prefix = "verification failed: identity: "
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"good.crt", "--root", "root.pem", "--trust-domain", "other.test"}, prefix + `spiffe://acme.test/client/a: trust domain "acme.test" is not trusted (trusted: other.test)`},
		{[]string{"expired.crt", "--root", "root.pem", "--trust-domain", "acme.test"}, prefix + "spiffe://acme.test/client/a: certificate expired at "},
		{[]string{"ca.crt", "--root", "root.pem", "--trust-domain", "acme.test"}, prefix + "certificate is a CA certificate, not a leaf: not an mcpca X509-SVID"},
		{[]string{"twouri.crt", "--root", "root.pem", "--trust-domain", "acme.test"}, prefix + "certificate has 2 URI SANs, an X509-SVID has exactly one: not an mcpca X509-SVID"},
		{[]string{"critical.crt", "--root", "root.pem", "--trust-domain", "acme.test"}, prefix + "spiffe://acme.test/client/a: unknown critical extension 1.3.6.1.4.1.99999.42.1"},
		{[]string{"eku.crt", "--root", "root.pem", "--trust-domain", "acme.test"}, prefix + "spiffe://acme.test/client/a: certificate lacks the clientAuth extended key usage"},
		{[]string{"good.crt", "--root", "root.pem", "--trust-domain", "acme.test", "--as", "server"}, prefix + "spiffe://acme.test/client/a: a client identity cannot act as a server"},
		{[]string{"foreign.crt", "--root", "root.pem", "--trust-domain", "acme.test"}, prefix + "spiffe://acme.test/client/a: chain does not verify: x509: certificate signed by unknown authority"},
		{[]string{"good.crt", "--root", "root.pem", "--trust-domain", "acme.test", "--crl", "stale.crl"}, prefix + "spiffe://acme.test/client/a: revocation status unknown: the CRL is stale: nextUpdate "},
		{[]string{"good.crt", "--root", "root.pem", "--trust-domain", "acme.test", "--crl", "forged.crl"}, prefix + `spiffe://acme.test/client/a: revocation status unknown: trust: CRL signature does not verify with issuer certificate "acme.test Test Intermediate CA": x509: ECDSA verification failure`},
		{[]string{"good.crt", "--root", "root.pem", "--trust-domain", "acme.test", "--crl", "junk.pem"}, prefix + "spiffe://acme.test/client/a: revocation status unknown: trust: no CRL loaded from junk.pem: CRL: x509: "},
		{[]string{"good.crt"}, "mcpca: missing --root (the CA's root certificate; get it with `mcpca bootstrap`)"},
		{[]string{"junk.pem", "--root", "root.pem", "--trust-domain", "acme.test"}, "mcpca: junk.pem: verification failed: junk.pem: no PEM certificate found"},
		{[]string{"good.crt", "--root", "root.pem"}, "mcpca: missing --trust-domain (the trust domain the identity must belong to, e.g. acme.test; --any-trust-domain accepts any that the root signs)"},
		{[]string{"good.crt", "--root", "root.pem", "--trust-domain", "acme.test", "--any-trust-domain"}, "mcpca: give one of --trust-domain and --any-trust-domain"},
		{[]string{"good.crt", "--root", "junk.pem", "--trust-domain", "acme.test"}, "verification failed: trust: junk.pem: bundle has no PEM certificates"},
		{[]string{"good.crt", "--root", "root.pem", "--trust-domain", "acme.test", "--as", "robot"}, `verification failed: --as "robot": want client or server`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := fails(t, dir, tc.want, append([]string{"verify"}, tc.args...)...)
			if r.code != 1 {
				t.Errorf("exit code %d, want 1", r.code)
			}
		})
	}
}

func TestParseSerial(t *testing.T) {
	for in, want := range map[string]string{
		"1234": "1234", "0x4d2": "1234", "0X4D2": "1234", "04:d2": "1234", " 1234 ": "1234",
		"0x1f0000000000000000000000000000000001": "2700480863884567646045340884578512526114817",
	} {
		n, err := parseSerial(in)
		if err != nil || n.String() != want {
			t.Errorf("parseSerial(%q) = %v, %v; want %s", in, n, err, want)
		}
	}
	for _, in := range []string{"", "12ab", "0x", "0xzz", "-5", "+5", "0", "0x0", "1.5", "4d:zz"} {
		if n, err := parseSerial(in); err == nil || !strings.Contains(err.Error(), "is not a serial number") {
			t.Errorf("parseSerial(%q) = %v, %v; want an error", in, n, err)
		}
	}
}

// TestVerifyCommandWeakKey: a P-224 or RSA-1024 leaf of the CA is refused
// by the key policy (identity.CheckPublicKey).
func TestVerifyCommandWeakKey(t *testing.T) {
	ca, dir := verifyFixture(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "p224.crt"), ca.CreateSVID("spiffe://acme.test/client/a", testca.WithPublicKey(&p224.PublicKey)).ChainPEM())
	write(t, filepath.Join(dir, "rsa1024.crt"), ca.CreateSVID("spiffe://acme.test/server/files", testca.WithPublicKey(&rsa1024.PublicKey)).ChainPEM())
	r := fails(t, dir, "mcpca: p224.crt: verification failed: identity: spiffe://acme.test/client/a: certificate refused: ECDSA P-224 key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits",
		"verify", "p224.crt", "--root", "root.pem", "--trust-domain", "acme.test")
	if r.code != 1 || r.stdout != "" {
		t.Errorf("exit %d, stdout %q", r.code, r.stdout)
	}
	fails(t, dir, "mcpca: rsa1024.crt: verification failed: identity: spiffe://acme.test/server/files: certificate refused: RSA-1024 key: key not allowed: use ECDSA P-256 or P-384, Ed25519, or RSA of at least 2048 bits",
		"verify", "rsa1024.crt", "--root", "root.pem", "--trust-domain", "acme.test")
}
