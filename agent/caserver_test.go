package agent

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testCAServer is a stand-in for the CA's HTTP API on loopback (sign, renew,
// rekey, roots), with step-ca's wire format, signing with a testCA. It
// judges client certificates at now(), so tests can run it on a fake clock.
type testCAServer struct {
	ca       *testCA
	now      func() time.Time
	lifetime time.Duration
	srv      *httptest.Server
	url      string

	down     atomic.Bool
	renewals atomic.Int64
	rekeys   atomic.Int64
	signs    atomic.Int64

	mu     sync.Mutex
	tokens map[string]bool // minted and not yet used
	extra  []*x509.Certificate
}

func newTestCAServer(t *testing.T, ca *testCA, now func() time.Time, lifetime time.Duration) *testCAServer {
	t.Helper()
	s := &testCAServer{ca: ca, now: now, lifetime: lifetime, tokens: map[string]bool{}}
	real := time.Now()
	serverCert := ca.cert("ca", real.Add(-time.Hour), real.Add(24*time.Hour))
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
	s.url = s.srv.URL
	return s
}

// rootFile writes the CA's root to dir/root.pem.
func (s *testCAServer) rootPEM() []byte { return pemCerts(s.ca.roots()...) }

// mint returns a one-time token granting subject and sans.
func (s *testCAServer) mint(subject string, sans ...string) string {
	claims, _ := json.Marshal(map[string]any{"sub": subject, "sans": sans, "nonce": serial(s.ca.tb).Text(16)})
	enc := base64.RawURLEncoding.EncodeToString
	tok := enc([]byte(`{"alg":"ES256"}`)) + "." + enc(claims) + "." + enc([]byte("sig"))
	s.mu.Lock()
	s.tokens[tok] = true
	s.mu.Unlock()
	return tok
}

func (s *testCAServer) fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"status": code, "message": msg})
}

func (s *testCAServer) reply(w http.ResponseWriter, chain []*x509.Certificate) {
	resp := map[string]any{"crt": string(pemCerts(chain[0])), "ca": string(pemCerts(chain[1]))}
	var all []string
	for _, c := range chain {
		all = append(all, string(pemCerts(c)))
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

func (s *testCAServer) sign(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() {
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
	s.signs.Add(1)
	now := s.now()
	s.reply(w, s.ca.issue(claims.Sub, csr.PublicKey, now, now.Add(s.lifetime)))
}

func (s *testCAServer) renew(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() {
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
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.ca.pool(), Intermediates: inter, CurrentTime: s.now(),
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
		s.rekeys.Add(1)
	} else {
		s.renewals.Add(1)
	}
	now := s.now()
	s.reply(w, s.ca.issue(leaf.Subject.CommonName, pub, now, now.Add(s.lifetime)))
}

func (s *testCAServer) roots(w http.ResponseWriter, r *http.Request) {
	if s.down.Load() {
		s.fail(w, 503, "the CA is down")
		return
	}
	var crts []string
	s.mu.Lock()
	extra := s.extra
	s.mu.Unlock()
	for _, c := range append(s.ca.roots(), extra...) {
		crts = append(crts, string(pemCerts(c)))
	}
	json.NewEncoder(w).Encode(map[string]any{"crts": crts})
}

var (
	_ = net.IPv4
	_ = url.Parse
)
