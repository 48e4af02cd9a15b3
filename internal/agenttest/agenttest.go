// Package agenttest holds the test doubles of the agent's tests: a small
// two-level PKI and a stand-in for the CA's HTTP API on loopback.
package agenttest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpca/mcpca/internal/pemfile"
	"github.com/mcpca/mcpca/internal/testca"
)

// CA is the agent tests' two-level PKI, on internal/testca (the one test
// PKI): a root and an intermediate that issues SPIFFE server leaves for
// 127.0.0.1 and localhost, which Rotate replaces.
type CA struct {
	tb  testing.TB
	mu  sync.Mutex
	pki *testca.CA
}

// T0 is the start of time of the fake-clock tests.
var T0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// NewCA returns a new test PKI.
func NewCA(tb testing.TB) *CA {
	tb.Helper()
	ca := &CA{tb: tb}
	ca.Rotate()
	return ca
}

// Rotate replaces the root and intermediate with new ones.
func (ca *CA) Rotate() {
	pki := testca.NewCA(ca.tb, "example.test", testca.WithTime(T0), testca.WithCAValidity(5*365*24*time.Hour))
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.pki = pki
}

// Roots returns the current root.
func (ca *CA) Roots() []*x509.Certificate {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return []*x509.Certificate{ca.pki.Root()}
}

// Pool returns the current root as a pool.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, r := range ca.Roots() {
		p.AddCert(r)
	}
	return p
}

// Issue signs a leaf for pub valid from notBefore to notAfter: the chain,
// leaf first.
func (ca *CA) Issue(name string, pub crypto.PublicKey, notBefore, notAfter time.Time) []*x509.Certificate {
	ca.mu.Lock()
	pki := ca.pki
	ca.mu.Unlock()
	return pki.CreateSVID("spiffe://example.test/server/"+name, testca.WithPublicKey(pub), testca.WithValidity(notBefore, notAfter),
		testca.WithDNSNames("localhost"), testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)),
		testca.WithTemplate(func(c *x509.Certificate) { c.Subject.CommonName = name })).Chain
}

// Cert returns a fresh key and a certificate for it.
func (ca *CA) Cert(name string, notBefore, notAfter time.Time) tls.Certificate {
	k := NewKey(ca.tb)
	return TLSCert(ca.Issue(name, k.Public(), notBefore, notAfter), k)
}

// Renewer returns a renew function that keeps the key and issues for
// lifetime from now() on.
func (ca *CA) Renewer(now func() time.Time, lifetime time.Duration) func(context.Context, tls.Certificate) (tls.Certificate, error) {
	return func(_ context.Context, cur tls.Certificate) (tls.Certificate, error) {
		n := now()
		chain := ca.Issue(cur.Leaf.Subject.CommonName, cur.Leaf.PublicKey, n, n.Add(lifetime))
		return TLSCert(chain, cur.PrivateKey.(crypto.Signer)), nil
	}
}

// TLSCert pairs a chain with its key.
func TLSCert(chain []*x509.Certificate, key crypto.Signer) tls.Certificate {
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// NewKey returns a P-256 key.
func NewKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// Serial returns a random serial number.
func Serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// PEMCerts PEM-encodes certificates.
func PEMCerts(certs ...*x509.Certificate) []byte { return pemfile.EncodeCertificates(certs...) }

// Intermediate returns the current intermediate.
func (ca *CA) Intermediate() *x509.Certificate {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.pki.Cert
}

// CAServer is a stand-in for the CA's HTTP API on loopback (sign, renew,
// rekey, roots), with step-ca's wire format, signing with a testCA. It
// judges client certificates at now(), so tests can run it on a fake clock.
type CAServer struct {
	ca       *CA
	now      func() time.Time
	lifetime time.Duration
	srv      *httptest.Server
	// URL is the server's https URL.
	URL string

	// Down makes every endpoint answer 503.
	Down atomic.Bool
	// Renewals, Rekeys and Signs count what the server issued.
	Renewals atomic.Int64
	Rekeys   atomic.Int64
	Signs    atomic.Int64

	mu     sync.Mutex
	tokens map[string]bool     // minted and not yet used
	extra  []*x509.Certificate // served by /roots after the CA's root
}

// NewCAServer starts a CA server for ca, issuing certificates of lifetime
// at now().
func NewCAServer(t *testing.T, ca *CA, now func() time.Time, lifetime time.Duration) *CAServer {
	t.Helper()
	s := &CAServer{ca: ca, now: now, lifetime: lifetime, tokens: map[string]bool{}}
	real := time.Now()
	serverCert := ca.Cert("ca", real.Add(-time.Hour), real.Add(24*time.Hour))
	mux := http.NewServeMux()
	mux.HandleFunc("POST /1.0/sign", s.sign)
	mux.HandleFunc("POST /1.0/renew", s.renew)
	mux.HandleFunc("POST /1.0/rekey", s.renew)
	mux.HandleFunc("GET /1.0/roots", s.roots)
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequestClientCert,
	}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	s.URL = s.srv.URL
	return s
}

// RootPEM returns the CA's root, PEM.
func (s *CAServer) RootPEM() []byte { return PEMCerts(s.ca.Roots()...) }

// Mint returns a one-time token granting subject and sans.
func (s *CAServer) Mint(subject string, sans ...string) string {
	claims, _ := json.Marshal(map[string]any{"sub": subject, "sans": sans, "nonce": Serial(s.ca.tb).Text(16)})
	enc := base64.RawURLEncoding.EncodeToString
	tok := enc([]byte(`{"alg":"ES256"}`)) + "." + enc(claims) + "." + enc([]byte("sig"))
	s.mu.Lock()
	s.tokens[tok] = true
	s.mu.Unlock()
	return tok
}

func (s *CAServer) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"status": code, "message": msg})
}

func (s *CAServer) reply(w http.ResponseWriter, chain []*x509.Certificate) {
	resp := map[string]any{"crt": string(PEMCerts(chain[0])), "ca": string(PEMCerts(chain[1]))}
	var all []string
	for _, c := range chain {
		all = append(all, string(PEMCerts(c)))
	}
	resp["certChain"] = all
	json.NewEncoder(w).Encode(resp)
}

func readCSR(r *http.Request) (*x509.CertificateRequest, map[string]string, error) {
	var body map[string]string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode([]byte(body["csr"]))
	if block == nil {
		return nil, body, nil
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return csr, body, csr.CheckSignature()
}

func (s *CAServer) sign(w http.ResponseWriter, r *http.Request) {
	if s.Down.Load() {
		s.fail(w, 503, "the CA is down")
		return
	}
	csr, body, err := readCSR(r)
	if err != nil || csr == nil {
		s.fail(w, 400, "bad CSR")
		return
	}
	tok := body["ott"]
	s.mu.Lock()
	ok := s.tokens[tok]
	delete(s.tokens, tok)
	s.mu.Unlock()
	if !ok {
		s.fail(w, 401, "token already used or unknown")
		return
	}
	parts := strings.Split(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Sub  string   `json:"sub"`
		SANs []string `json:"sans"`
	}
	json.Unmarshal(b, &claims)
	var got []string
	for _, u := range csr.URIs {
		got = append(got, u.String())
	}
	for _, ip := range csr.IPAddresses {
		got = append(got, ip.String())
	}
	got = append(got, csr.DNSNames...)
	if strings.Join(got, ",") != strings.Join(claims.SANs, ",") {
		s.fail(w, 400, "CSR SANs "+strings.Join(got, ",")+" differ from the token's "+strings.Join(claims.SANs, ","))
		return
	}
	s.Signs.Add(1)
	now := s.now()
	s.reply(w, s.ca.Issue(claims.Sub, csr.PublicKey, now, now.Add(s.lifetime)))
}

func (s *CAServer) renew(w http.ResponseWriter, r *http.Request) {
	if s.Down.Load() {
		s.fail(w, 503, "the CA is down")
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		s.fail(w, 401, "no client certificate")
		return
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.ca.Pool(), Intermediates: inter, CurrentTime: s.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		s.fail(w, 401, "client certificate: "+err.Error())
		return
	}
	pub := leaf.PublicKey
	if strings.HasSuffix(r.URL.Path, "/rekey") {
		csr, _, err := readCSR(r)
		if err != nil || csr == nil {
			s.fail(w, 400, "bad CSR")
			return
		}
		pub = csr.PublicKey
		s.Rekeys.Add(1)
	} else {
		s.Renewals.Add(1)
	}
	now := s.now()
	s.reply(w, s.ca.Issue(leaf.Subject.CommonName, pub, now, now.Add(s.lifetime)))
}

func (s *CAServer) roots(w http.ResponseWriter, r *http.Request) {
	if s.Down.Load() {
		s.fail(w, 503, "the CA is down")
		return
	}
	var crts []string
	s.mu.Lock()
	extra := s.extra
	s.mu.Unlock()
	for _, c := range append(s.ca.Roots(), extra...) {
		crts = append(crts, string(PEMCerts(c)))
	}
	json.NewEncoder(w).Encode(map[string]any{"crts": crts})
}

// AddRoots makes /roots serve roots too (a rotation in progress).
func (s *CAServer) AddRoots(roots ...*x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extra = append(s.extra, roots...)
}
