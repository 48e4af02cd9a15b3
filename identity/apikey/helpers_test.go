package apikey_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpca/mcpca/identity/apikey"
)

const resource = "https://mcp.example.com/mcp"

// fakeCA serves a JWKS and a signed key set over real TLS on loopback, as
// the CA does, with a set the test edits.
type fakeCA struct {
	t    testing.TB
	srv  *httptest.Server
	key  *ecdsa.PrivateKey
	kid  string
	mu   sync.Mutex
	set  apikey.Set
	jws  string // when set, served instead of signing set
	hits int
}

func newFakeCA(t testing.TB) *fakeCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeCA{t: t, key: key, kid: "k1"}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch r.URL.Path {
		case apikey.JWKSPath:
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: f.kid, Algorithm: "ES256", Use: "sig"}}})
		case apikey.SetPath:
			f.hits++
			if f.jws != "" {
				_, _ = w.Write([]byte(f.jws))
				return
			}
			s, err := apikey.SignSet(&f.set, f.key, f.kid)
			if err != nil {
				t.Error(err)
			}
			_, _ = w.Write([]byte(s))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	f.set.Issuer = f.srv.URL
	return f
}

func (f *fakeCA) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(f.srv.Certificate())
	return p
}

// publish sets the keys and the set's times.
func (f *fakeCA) publish(now time.Time, validity time.Duration, keys ...apikey.Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set.IssuedAt, f.set.NextUpdate, f.set.Keys = now.Unix(), now.Add(validity).Unix(), keys
}

// newKey makes a key and its set entry.
func newKey(t testing.TB, name string, exp time.Time) (string, apikey.Entry) {
	k, h, err := apikey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k, apikey.Entry{Name: name, Hash: apikey.EncodeHash(h), Roles: []string{"reader"}, Attributes: map[string]string{"team": "a"}, Audience: resource, Expires: exp.Unix()}
}
