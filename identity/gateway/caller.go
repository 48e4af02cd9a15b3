package gateway

import (
	"bytes"
	"container/heap"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/internal/strictjson"
)

// The caller assertion
//
// With WithCallerAssertion, every request the gateway forwards carries the
// header Mcpca-Caller: a compact JWS (RFC 7515) whose protected header
// names its type ("typ": "mcpca-caller+jwt") and carries the gateway's own
// certificate chain ("x5c", leaf first), signed with that certificate's
// key (ES256, ES384, EdDSA or RS256 by the key). Its payload:
//
//	{"iss": "spiffe://td/server/gateway",   the gateway's SPIFFE ID
//	 "sub": "spiffe://td/client/alice",     the caller's SPIFFE ID
//	 "aud": "http://127.0.0.1:3001/mcp",    the upstream URL, as configured
//	 "iat": 1767225600, "exp": 1767225610,  Unix seconds, ten seconds apart
//	 "jti": "…",                             random, unique per assertion
//	 "htm": "POST",                          the request it is signed for: its HTTP method,
//	 "sid": "…",                             its Mcp-Session-Id (absent when it has none)
//	 "body_sha256": "…",                     and the SHA-256 of its body, base64url
//	 "roles": ["reader"], "attrs": {"team": "payments"},
//	 "serial": "0x1f…"}                      the caller certificate's serial
//
// One assertion is signed for each request, bound to it by htm, sid and
// body_sha256: a captured assertion cannot authorize another request, and
// lives ten seconds; an upstream that keeps the jti of those it accepted
// (WithReplayCache) refuses the same request sent again. A client cannot
// forge one: it would need the gateway's key, and whatever Mcpca-Caller
// header a client sends is dropped. An upstream checks it with
// VerifyCaller (the chain against the CA's bundle, the gateway's SPIFFE
// ID, the signature, the audience, the time and the binding to the
// request), or by hand from this description with any JOSE library.

// CallerType is the "typ" of a caller assertion's protected header.
const CallerType = "mcpca-caller+jwt"

// CallerHeader is the HTTP header of the caller assertion.
const CallerHeader = callerHeader

// Caller is what a caller assertion says.
type Caller struct {
	Gateway    string            `json:"iss"`
	ID         string            `json:"sub"`
	Audience   string            `json:"aud"`
	IssuedAt   int64             `json:"iat"`
	Expiry     int64             `json:"exp"`
	Nonce      string            `json:"jti"`
	Method     string            `json:"htm"`
	Session    string            `json:"sid,omitempty"`
	BodyHash   string            `json:"body_sha256"`
	Roles      []string          `json:"roles,omitempty"`
	Attributes map[string]string `json:"attrs,omitempty"`
	Serial     string            `json:"serial"`
}

// assertions holds the signer of the gateway's current certificate,
// swapped whole when the certificate changes.
type assertions struct {
	cur atomic.Pointer[assertionSigner]
}

type assertionSigner struct {
	cert   *tls.Certificate
	signer jose.Signer // safe for concurrent use
	self   string
	// header is the base64url protected header, made once per
	// certificate when its key is an ECDSA or Ed25519 private key: the
	// header (the x5c chain, 1 to 2 kB) is then not re-encoded per
	// request, which was half of go-jose's cost of a signature. Other
	// keys (RSA, a crypto.Signer elsewhere) sign through signer.
	header string
	alg    jose.SignatureAlgorithm
}

// assertCaller signs the caller assertion of c for the upstream request
// with method, session sid and body, with the gateway's current
// certificate.
func (gw *Gateway) assertCaller(c *mcpauth.Caller, method, sid string, body []byte) (string, error) {
	cert, err := gw.cfg.signer.GetCertificate(nil)
	if err != nil {
		return "", err
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return "", fmt.Errorf("no certificate to sign with")
	}
	as := gw.assert.cur.Load()
	if as == nil || as.cert != cert {
		var err error
		if as, err = newAssertionSigner(cert); err != nil {
			return "", err
		}
		gw.assert.cur.Store(as)
	}
	return gw.signAssertion(as, c, method, sid, body, gw.cfg.clock.Now())
}

// newAssertionSigner returns the JWS signer of cert (its chain in x5c)
// with the SPIFFE ID it names.
func newAssertionSigner(cert *tls.Certificate) (*assertionSigner, error) {
	var err error
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	self, err := identity.FromCertificate(leaf)
	if err != nil {
		return nil, err
	}
	alg, err := algorithmOf(cert.PrivateKey)
	if err != nil {
		return nil, err
	}
	x5c := make([]string, len(cert.Certificate))
	for i, der := range cert.Certificate {
		x5c[i] = base64.StdEncoding.EncodeToString(der)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: cert.PrivateKey}, (&jose.SignerOptions{}).
		WithType(CallerType).WithHeader("x5c", x5c))
	if err != nil {
		return nil, err
	}
	as := &assertionSigner{cert: cert, signer: signer, self: self.ID.String(), alg: alg}
	switch cert.PrivateKey.(type) {
	case *ecdsa.PrivateKey, ed25519.PrivateKey:
		h, err := json.Marshal(struct {
			Alg jose.SignatureAlgorithm `json:"alg"`
			Typ string                  `json:"typ"`
			X5C []string                `json:"x5c"`
		}{alg, CallerType, x5c})
		if err != nil {
			return nil, err
		}
		as.header = base64.RawURLEncoding.EncodeToString(h)
	}
	return as, nil
}

// sign is the compact JWS of payload: RFC 7515's serialization of the
// signature RFC 7518 section 3.4 (ECDSA: R and S, each the curve's size)
// or RFC 8037 (Ed25519) defines, over the header made once; through
// go-jose for other keys. VerifyCaller reads what either makes, with
// go-jose (TestAssertionSignedBothWays).
func (as *assertionSigner) sign(payload []byte) (string, error) {
	if as.header == "" {
		jws, err := as.signer.Sign(payload)
		if err != nil {
			return "", err
		}
		return jws.CompactSerialize()
	}
	enc := base64.RawURLEncoding
	in := make([]byte, 0, len(as.header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(2*66))
	in = append(in, as.header...)
	in = append(in, '.')
	in = enc.AppendEncode(in, payload)
	var sig []byte
	switch k := as.cert.PrivateKey.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, in)
	case *ecdsa.PrivateKey:
		var digest []byte
		var h crypto.Hash
		switch as.alg {
		case jose.ES256:
			d := sha256.Sum256(in)
			digest, h = d[:], crypto.SHA256
		case jose.ES384:
			d := sha512.Sum384(in)
			digest, h = d[:], crypto.SHA384
		default:
			return "", fmt.Errorf("no ECDSA signature for %s", as.alg)
		}
		// Deterministic (RFC 6979; a nil rand): its nonce comes from an
		// HMAC-DRBG on the digest's hash, where Sign's hedged nonce
		// takes one on SHA-512, a fifth of a P-256 signature here. Each
		// payload differs (jti), so no two signatures share a nonce.
		der, err := k.Sign(nil, digest, h)
		if err != nil {
			return "", err
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if sig, err = rawSignature(der, size); err != nil {
			return "", err
		}
	}
	in = append(in, '.')
	return string(enc.AppendEncode(in, sig)), nil
}

// rawSignature is the JWS form of an ASN.1 ECDSA signature: R and S,
// each size bytes (RFC 7518 section 3.4).
func rawSignature(der []byte, size int) ([]byte, error) {
	var r, s []byte
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, asn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return nil, fmt.Errorf("an ECDSA signature that is not ASN.1")
	}
	r, s = bytes.TrimLeft(r, "\x00"), bytes.TrimLeft(s, "\x00")
	if len(r) > size || len(s) > size {
		return nil, fmt.Errorf("an ECDSA signature too long for its curve")
	}
	sig := make([]byte, 2*size)
	copy(sig[size-len(r):size], r)
	copy(sig[2*size-len(s):], s)
	return sig, nil
}

// signAssertion signs a new assertion of c at now for the request with
// method, session sid and body.
func (gw *Gateway) signAssertion(as *assertionSigner, c *mcpauth.Caller, method, sid string, body []byte, now time.Time) (string, error) {
	id := c.Identity()
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	claims := Caller{
		Gateway: as.self, ID: id.ID.String(), Audience: gw.Upstream(),
		IssuedAt: now.Unix(), Expiry: now.Add(DefaultCallerAssertTTL).Unix(),
		Nonce: base64.RawURLEncoding.EncodeToString(nonce[:]), Method: method, Session: sid, BodyHash: bodyHash(body),
		Roles: id.Roles, Attributes: id.Attributes,
	}
	if id.Serial != nil {
		claims.Serial = "0x" + id.Serial.Text(16)
	}
	payload, err := json.Marshal(&claims)
	if err != nil {
		return "", err
	}
	return as.sign(payload)
}

// bodyHash is the body_sha256 of a request body.
func bodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func algorithmOf(key crypto.PrivateKey) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return jose.ES256, nil
		case 384:
			return jose.ES384, nil
		}
	case ed25519.PrivateKey:
		return jose.EdDSA, nil
	case *rsa.PrivateKey:
		return jose.RS256, nil
	}
	return "", fmt.Errorf("the gateway's key (%T) cannot sign caller assertions", key)
}

// VerifyOption configures VerifyCaller.
type VerifyOption interface{ apply(*verifyConfig) }

type verifyConfig struct {
	gateways []string
	audience string
	clock    clock.Clock
	skew     time.Duration
	maxBody  int64
	replay   *ReplayCache
}

type verifyOptionFunc func(*verifyConfig)

func (f verifyOptionFunc) apply(c *verifyConfig) { f(c) }

// WithGateways names the SPIFFE IDs of the gateways whose assertions are
// accepted (required: any other server of the CA could sign one too).
func WithGateways(ids ...string) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.gateways = append(c.gateways, ids...) })
}

// WithAudience requires the assertion's audience to be aud, the upstream
// URL the gateway is configured with (required).
func WithAudience(aud string) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.audience = aud })
}

// WithVerifyClock sets the clock the assertion's times are checked on
// (default clock.Real), and WithSkew how far they may be off (default 5s).
func WithVerifyClock(c clock.Clock) VerifyOption {
	return verifyOptionFunc(func(cfg *verifyConfig) { cfg.clock = c })
}

// WithSkew sets how far the assertion's times may be off this clock.
func WithSkew(d time.Duration) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.skew = d })
}

// WithVerifyMaxBody bounds the request body VerifyCaller reads to check
// the assertion's body_sha256 (default DefaultMaxBodyBytes, the gateway's
// own bound): a larger body is refused.
func WithVerifyMaxBody(n int64) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.maxBody = n })
}

// WithReplayCache has VerifyCaller remember the jti of each assertion it
// accepts in rc until the assertion expires, and refuse an assertion it
// has seen: the same request sent again by whoever captured it. Share one
// ReplayCache among the handlers of an upstream.
func WithReplayCache(rc *ReplayCache) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.replay = rc })
}

// ReplayCache remembers the caller assertions VerifyCaller accepted, until
// they expire (WithReplayCache). It is safe for concurrent use.
type ReplayCache struct {
	mu    sync.Mutex
	max   int
	seen  map[string]time.Time // jti -> when it may be forgotten
	order forgetHeap           // the same, earliest first
}

// NewReplayCache returns a ReplayCache of at most max assertions (0: 65536).
// When that many are live, VerifyCaller refuses new ones until some
// expire rather than forget one that could be replayed.
func NewReplayCache(max int) *ReplayCache {
	if max <= 0 {
		max = 1 << 16
	}
	return &ReplayCache{max: max, seen: make(map[string]time.Time)}
}

// first records jti until forget, refusing one it holds already. The
// expired ones are dropped earliest first (a heap), so a full cache costs
// O(log n) per assertion, not a scan of every entry.
func (rc *ReplayCache) first(jti string, now, forget time.Time) error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for len(rc.order) > 0 && !now.Before(rc.order[0].forget) {
		e := heap.Pop(&rc.order).(forgetEntry)
		if t, ok := rc.seen[e.jti]; ok && t.Equal(e.forget) {
			delete(rc.seen, e.jti)
		}
	}
	if t, ok := rc.seen[jti]; ok && now.Before(t) {
		return errorf("caller assertion replayed: its jti was already used")
	}
	if len(rc.seen) >= rc.max {
		return errorf("caller assertion refused: the replay cache is full (%d assertions, none expired yet)", rc.max)
	}
	rc.seen[jti] = forget
	heap.Push(&rc.order, forgetEntry{jti: jti, forget: forget})
	return nil
}

// forgetEntry is a jti and when it may be forgotten.
type forgetEntry struct {
	jti    string
	forget time.Time
}

// forgetHeap is a min-heap of forgetEntry by forget (container/heap).
type forgetHeap []forgetEntry

func (h forgetHeap) Len() int           { return len(h) }
func (h forgetHeap) Less(i, j int) bool { return h[i].forget.Before(h[j].forget) }
func (h forgetHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *forgetHeap) Push(x any)        { *h = append(*h, x.(forgetEntry)) }
func (h *forgetHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// VerifyCaller checks the caller assertion of an upstream request r (its
// Mcpca-Caller header): the gateway's certificate chain with v (as a
// server identity: chain, expiry, revocation when v checks a CRL), that the
// gateway is one of WithGateways, the signature with that certificate's
// key, the audience, the time, and that it was signed for r: its method,
// Mcp-Session-Id and body (which VerifyCaller reads, and puts back for the
// handler to read as it came). Call it before anything reads r's body. It
// returns what the assertion says.
func VerifyCaller(r *http.Request, v *identity.Verifier, opts ...VerifyOption) (*Caller, error) {
	cfg := verifyConfig{skew: 5 * time.Second, maxBody: DefaultMaxBodyBytes}
	for _, o := range opts {
		o.apply(&cfg)
	}
	cfg.clock = clock.Or(cfg.clock)
	if len(cfg.gateways) == 0 || cfg.audience == "" {
		return nil, errorf("VerifyCaller needs WithGateways and WithAudience")
	}
	h := r.Header.Values(callerHeader)
	switch len(h) {
	case 0:
		return nil, errorf("no %s header: the request did not come through an mcpca gateway", callerHeader)
	case 1:
	default:
		return nil, errorf("%d %s headers, want one", len(h), callerHeader)
	}
	jws, err := jose.ParseSigned(h[0], []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.RS256})
	if err != nil {
		return nil, errorf("caller assertion: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errorf("caller assertion: %d signatures, want one", len(jws.Signatures))
	}
	// The protected header as signed (go-jose keeps x5c to itself).
	var ph struct {
		Type string   `json:"typ"`
		X5C  []string `json:"x5c"`
	}
	seg, _, _ := strings.Cut(h[0], ".")
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil, errorf("caller assertion: header: %v", err)
	}
	if err := strictjson.Unmarshal(raw, &ph); err != nil {
		return nil, errorf("caller assertion: header: %v", err)
	}
	if ph.Type != CallerType {
		return nil, errorf("caller assertion: type %q, want %q", ph.Type, CallerType)
	}
	chain, err := x5cChain(ph.X5C)
	if err != nil {
		return nil, errorf("caller assertion: %v", err)
	}
	gw, err := v.Verify(chain, identity.KindServer)
	if err != nil {
		return nil, errorf("caller assertion: the gateway's certificate: %v", err)
	}
	if !slices.Contains(cfg.gateways, gw.ID.String()) {
		return nil, errorf("caller assertion signed by %s, which is not an accepted gateway", gw.ID)
	}
	payload, err := jws.Verify(chain[0].PublicKey)
	if err != nil {
		return nil, errorf("caller assertion: signature: %v", err)
	}
	var c Caller
	if err := strictjson.Unmarshal(payload, &c); err != nil {
		return nil, errorf("caller assertion: payload: %v", err)
	}
	now := cfg.clock.Now()
	switch {
	case c.Gateway != gw.ID.String():
		return nil, errorf("caller assertion: issuer %q is not the signing gateway %s", c.Gateway, gw.ID)
	case c.Audience != cfg.audience:
		return nil, errorf("caller assertion: audience %q, want %q", c.Audience, cfg.audience)
	case c.Expiry == 0 || now.After(time.Unix(c.Expiry, 0).Add(cfg.skew)):
		return nil, errorf("caller assertion expired at %s", time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	case now.Add(cfg.skew).Before(time.Unix(c.IssuedAt, 0)):
		return nil, errorf("caller assertion issued in the future (%s)", time.Unix(c.IssuedAt, 0).UTC().Format(time.RFC3339))
	}
	if _, err := identity.ParseID(c.ID); err != nil {
		return nil, errorf("caller assertion: subject: %v", err)
	}
	if err := checkBinding(r, &c, cfg.maxBody); err != nil {
		return nil, err
	}
	if cfg.replay != nil {
		if c.Nonce == "" {
			return nil, errorf("caller assertion: no jti: a replay cache cannot tell it from a replay")
		}
		if err := cfg.replay.first(c.Nonce, now, time.Unix(c.Expiry, 0).Add(cfg.skew)); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// checkBinding holds r to the request the assertion c was signed for.
func checkBinding(r *http.Request, c *Caller, maxBody int64) error {
	switch sid := r.Header.Get(sessionHeader); {
	case c.Method != r.Method:
		return errorf("caller assertion: signed for a %q request, not this %s (a replayed assertion?)", c.Method, r.Method)
	case c.Session != sid:
		return errorf("caller assertion: signed for session %q, not this request's %q (a replayed assertion?)", c.Session, sid)
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		_ = r.Body.Close()
		if err != nil {
			return errorf("caller assertion: reading the request body: %v", err)
		}
		if int64(len(b)) > maxBody {
			return errorf("caller assertion: the request body exceeds %d bytes", maxBody)
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	if want := bodyHash(body); subtle.ConstantTimeCompare([]byte(c.BodyHash), []byte(want)) != 1 {
		return errorf("caller assertion: signed for another request body (a replayed assertion?)")
	}
	return nil
}

func x5cChain(list []string) ([]*x509.Certificate, error) {
	if len(list) == 0 || len(list) > 8 {
		return nil, fmt.Errorf("want an x5c certificate chain of 1 to 8 certificates, got %d", len(list))
	}
	chain := make([]*x509.Certificate, 0, len(list))
	for _, s := range list {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("x5c: %v", err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("x5c: %v", err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}
