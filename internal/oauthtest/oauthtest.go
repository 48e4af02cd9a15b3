// Package oauthtest is a small authorization server for tests: RFC 8414
// metadata and a JWKS over real TLS on loopback, keys that rotate on
// demand, and access tokens minted with any claims and header (or forged:
// unsigned, signed by a key it never published).
package oauthtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Issuer is a running test authorization server.
type Issuer struct {
	URL string // the issuer identifier, https://127.0.0.1:PORT
	srv *httptest.Server

	mu      sync.Mutex
	key     *ecdsa.PrivateKey
	kid     string
	old     []jose.JSONWebKey // published keys besides the current one
	nextKid int

	// KeyFetches counts GETs of the JWKS.
	KeyFetches atomic.Int64
	// Introspections counts POSTs to the introspection endpoint.
	Introspections atomic.Int64

	opaque map[string]map[string]any // introspection answers by token
}

// Introspection client credentials the test issuer accepts.
const (
	IntrospectClient = "resource-server"
	IntrospectSecret = "resource-server-secret"
)

// New starts an issuer; it stops when tb's test ends.
func New(tb testing.TB) *Issuer {
	tb.Helper()
	is := &Issuer{opaque: map[string]map[string]any{}}
	is.key, is.kid = newKey(tb), "k1"
	is.nextKid = 2
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/jwks",
			"token_endpoint": is.URL + "/token", "grant_types_supported": []string{"client_credentials"},
			"introspection_endpoint": is.URL + "/introspect"})
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		is.Introspections.Add(1)
		if id, secret, ok := r.BasicAuth(); !ok || id != IntrospectClient || secret != IntrospectSecret {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		is.mu.Lock()
		ans, ok := is.opaque[r.PostFormValue("token")]
		is.mu.Unlock()
		if !ok {
			ans = map[string]any{"active": false}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ans)
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		is.KeyFetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(is.JWKS())
	})
	is.srv = httptest.NewTLSServer(mux)
	tb.Cleanup(is.srv.Close)
	is.URL = is.srv.URL
	return is
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// Client is an HTTP client that trusts the issuer's TLS certificate.
func (is *Issuer) Client() *http.Client { return is.srv.Client() }

// JWKS is the published key set.
func (is *Issuer) JWKS() jose.JSONWebKeySet {
	is.mu.Lock()
	defer is.mu.Unlock()
	keys := append([]jose.JSONWebKey{{Key: is.key.Public(), KeyID: is.kid, Algorithm: "ES256", Use: "sig"}}, is.old...)
	return jose.JSONWebKeySet{Keys: keys}
}

// Rotate makes a new current key; the previous one stays published when
// keepOld, and is withdrawn otherwise.
func (is *Issuer) Rotate(tb testing.TB, keepOld bool) {
	tb.Helper()
	k := newKey(tb)
	is.mu.Lock()
	defer is.mu.Unlock()
	if keepOld {
		is.old = append(is.old, jose.JSONWebKey{Key: is.key.Public(), KeyID: is.kid, Algorithm: "ES256", Use: "sig"})
	}
	is.key, is.kid = k, "k"+strconv.Itoa(is.nextKid)
	is.nextKid++
}

// Claims returns the claims of a valid access token for resource,
// subject sub, issued at now and valid for an hour.
func (is *Issuer) Claims(resource, sub string, now time.Time) map[string]any {
	return map[string]any{"iss": is.URL, "sub": sub, "aud": resource, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"jti": strconv.FormatInt(now.UnixNano(), 36), "client_id": "test-client"}
}

// Mint signs claims with the current key, typ at+jwt.
func (is *Issuer) Mint(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	is.mu.Lock()
	key, kid := is.key, is.kid
	is.mu.Unlock()
	return Sign(tb, key, jose.ES256, map[jose.HeaderKey]any{"kid": kid, "typ": "at+jwt"}, claims)
}

// Sign signs claims with key and alg and the given header fields.
func Sign(tb testing.TB, key crypto.Signer, alg jose.SignatureAlgorithm, header map[jose.HeaderKey]any, claims map[string]any) string {
	tb.Helper()
	opts := &jose.SignerOptions{ExtraHeaders: header}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Unsigned returns an "alg":"none" token of claims (RFC 7519 section 6).
func Unsigned(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + enc(payload) + "."
}

// HS256 returns a token of claims MACed with secret (an HMAC key), as an
// attacker would sign with a published key's bytes.
func HS256(tb testing.TB, secret []byte, kid string, claims map[string]any) string {
	tb.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret},
		&jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{"kid": kid, "typ": "at+jwt"}})
	if err != nil {
		tb.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

// CurrentKID is the key ID of the current key.
func (is *Issuer) CurrentKID() string {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.kid
}

// NewKey returns a fresh P-256 key (for forged signatures).
func NewKey(tb testing.TB) *ecdsa.PrivateKey { return newKey(tb) }

// Key is the current signing key.
func (is *Issuer) Key() *ecdsa.PrivateKey {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.key
}

// SignRaw signs payload, as given (duplicate keys and all), with the
// current key.
func (is *Issuer) SignRaw(tb testing.TB, payload string) string {
	tb.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: is.Key()},
		&jose.SignerOptions{ExtraHeaders: map[jose.HeaderKey]any{"kid": is.CurrentKID(), "typ": "at+jwt"}})
	if err != nil {
		tb.Fatal(err)
	}
	jws, err := s.Sign([]byte(payload))
	if err != nil {
		tb.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

// Opaque registers an opaque token and the introspection answer for it
// (nil: forget it, so that it is answered inactive).
func (is *Issuer) Opaque(token string, answer map[string]any) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if answer == nil {
		delete(is.opaque, token)
		return
	}
	is.opaque[token] = answer
}
