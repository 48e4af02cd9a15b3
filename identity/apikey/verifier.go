package apikey

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/ratelimit"
)

// Paths of the CA's endpoints a Verifier reads, under its URL.
const (
	SetPath  = "/1.0/apikeys"
	JWKSPath = "/1.0/oauth/jwks"
)

// Key is a verified API key: who it stands for, for a Cedar principal (the
// name, the roles, the attributes), and what it is bound to.
type Key struct {
	Name       string            // the name given at `mcpca apikey create`
	Roles      []string          // sorted as the CA stored them
	Attributes map[string]string // do not modify: shared by every Verify of the key
	Audience   string            // the resource the key is for
	Expires    time.Time
}

// Verifier checks API keys against the CA's signed key set, fetched every
// refresh interval (Run) like a CRL: no call to the CA per request. A
// Verifier is safe for concurrent use.
//
// Revocation takes effect within the refresh interval while the CA is
// reachable, and within the set's validity (next_update - issued_at, 60s
// at the CA by default) in every case: a set past its next_update refuses
// every key, and an older set than the one held is never taken.
type Verifier struct {
	cfg   config
	caURL string
	hc    *http.Client
	cur   atomic.Pointer[snapshot]
	fails *ratelimit.Failures

	mu sync.Mutex // serialises refreshes
}

type snapshot struct {
	issuedAt int64
	stale    time.Time // next_update
	byPrefix map[[8]byte][]entry
}

type entry struct {
	hash [HashSize]byte
	key  *Key
}

// New returns a Verifier of the keys of the CA at caURL (https://host:port),
// whose TLS certificate chains to roots. It fetches nothing until Refresh or
// Run; until then every key is refused (ErrNoKeySet). Verify needs
// WithAudience (without it every key is refused); Bearer does not: the
// oauth.Resource checks the audience against its own resource.
func New(caURL string, roots *x509.CertPool, opts ...Option) (*Verifier, error) {
	cfg := config{interval: DefaultRefreshInterval, failRate: DefaultFailureRate, failBurst: DefaultFailureBurst}
	for _, o := range opts {
		o.apply(&cfg)
	}
	cfg.clock = clock.Or(cfg.clock)
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if !strings.HasPrefix(caURL, "https://") {
		return nil, errorf("CA URL %q must start with https://", truncate(caURL))
	}
	for _, a := range cfg.audiences {
		if err := CheckAudience(a); err != nil {
			return nil, err
		}
	}
	if cfg.interval <= 0 {
		return nil, errorf("refresh interval %v is not positive", cfg.interval)
	}
	if cfg.failBurst < 1 || cfg.failRate <= 0 {
		return nil, errorf("failure limit %v/s, burst %d: both must be positive", cfg.failRate, cfg.failBurst)
	}
	hc := cfg.client
	if hc == nil {
		if roots == nil {
			return nil, errorf("no roots to trust the CA with")
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
		hc = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	}
	return &Verifier{cfg: cfg, caURL: strings.TrimRight(caURL, "/"), hc: hc, fails: ratelimit.New(cfg.failRate, cfg.failBurst)}, nil
}

type sourceKey struct{}

// WithSource returns ctx naming the source of the request (its IP address)
// for Verify's failure limit and log.
func WithSource(ctx context.Context, source string) context.Context {
	return context.WithValue(ctx, sourceKey{}, source)
}

func sourceOf(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}

// Verify checks key: its form, then the key set (held in memory: no call to
// the CA), its expiry and its audience. The hash is compared in constant
// time. Failed attempts are counted per source (WithSource; "" is one
// source for every caller that has none) and logged without the key; a
// source past its budget is refused without a look at the key. A refusal
// for want of a current key set (ErrNoKeySet) is not the caller's failure
// and is not counted.
func (v *Verifier) Verify(ctx context.Context, key string) (*Key, error) {
	return v.counted(ctx, key, true, true)
}

// counted is Verify, with the audience checked or not (the caller does it)
// and the refusals logged or not (the caller does it).
func (v *Verifier) counted(ctx context.Context, key string, checkAud, logIt bool) (*Key, error) {
	now := v.cfg.clock.Now()
	src := sourceOf(ctx)
	if v.fails.Limited(src, now) {
		return nil, errorf("%w from %s: try again later", ErrRateLimited, src)
	}
	k, err := v.verify(key, now, checkAud)
	if errors.Is(err, ErrNoKeySet) {
		// Not the caller's failure: it does not count against its budget.
		if logIt {
			v.cfg.logger.Warn("API key refused", "source", src, "error", err.Error())
		}
		return nil, err
	}
	if err != nil {
		within := v.fails.Fail(src, now)
		switch {
		case !logIt:
		case within:
			v.cfg.logger.Warn("API key refused", "source", src, "error", err.Error())
		default:
			v.cfg.logger.Warn("API key refused; source rate-limited", "source", src, "error", err.Error())
		}
		return nil, err
	}
	return k, nil
}

func (v *Verifier) verify(key string, now time.Time, checkAud bool) (*Key, error) {
	if err := Check(key); err != nil {
		return nil, err
	}
	snap := v.cur.Load()
	if snap == nil {
		return nil, errorf("%w: the key set was not fetched from %s yet", ErrNoKeySet, v.caURL)
	}
	if !now.Before(snap.stale) {
		return nil, errorf("%w: the key set from %s is stale since %s (refresh failing?)", ErrNoKeySet, v.caURL, snap.stale.UTC().Format(time.RFC3339))
	}
	h := Hash(key)
	var found *Key
	for _, e := range snap.byPrefix[[8]byte(h[:8])] {
		if subtle.ConstantTimeCompare(e.hash[:], h[:]) == 1 {
			found = e.key
		}
	}
	switch {
	case found == nil:
		return nil, errorf("%w", ErrUnknown)
	case !now.Before(found.Expires):
		return nil, errorf("key %q: %w at %s", found.Name, ErrExpired, found.Expires.UTC().Format(time.RFC3339))
	case checkAud && len(v.cfg.audiences) == 0:
		return nil, errorf("key %q: %w: this verifier names no audience of its own (WithAudience)", found.Name, ErrAudience)
	case checkAud && !slices.Contains(v.cfg.audiences, found.Audience):
		return nil, errorf("key %q: %w: it is for %s", found.Name, ErrAudience, found.Audience)
	}
	return found, nil
}

// VerifyRequest verifies the key of "Authorization: Bearer <key>" in r,
// with the host of r.RemoteAddr as the source.
func (v *Verifier) VerifyRequest(r *http.Request) (*Key, error) {
	src, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		src = r.RemoteAddr
	}
	ctx := WithSource(r.Context(), src)
	auth := r.Header.Get("Authorization")
	scheme, key, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return v.Verify(ctx, "") // counted as a failure, with its message
	}
	return v.Verify(ctx, strings.TrimSpace(key))
}

// Refresh fetches the CA's JWKS and key set once and takes the set when it
// verifies, is not older than the one held and is not stale.
func (v *Verifier) Refresh(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	var jwks jose.JSONWebKeySet
	b, err := v.get(ctx, JWKSPath)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &jwks); err != nil {
		return errorf("JWKS from %s: %v", v.caURL, err)
	}
	b, err = v.get(ctx, SetPath)
	if err != nil {
		return err
	}
	set, err := ParseSet(strings.TrimSpace(string(b)), &jwks, v.caURL)
	if err != nil {
		return err
	}
	now := v.cfg.clock.Now()
	if old := v.cur.Load(); old != nil && set.IssuedAt < old.issuedAt {
		return errorf("key set from %s issued at %d is older than the one held (%d): refused", v.caURL, set.IssuedAt, old.issuedAt)
	}
	stale := time.Unix(set.NextUpdate, 0)
	if !now.Before(stale) {
		return errorf("key set from %s is stale since %s", v.caURL, stale.UTC().Format(time.RFC3339))
	}
	v.cur.Store(newSnapshot(set))
	return nil
}

func newSnapshot(set *Set) *snapshot {
	s := &snapshot{issuedAt: set.IssuedAt, stale: time.Unix(set.NextUpdate, 0), byPrefix: make(map[[8]byte][]entry, len(set.Keys))}
	for _, e := range set.Keys {
		h, _ := DecodeHash(e.Hash) // checked by ParseSet
		k := &Key{Name: e.Name, Roles: e.Roles, Attributes: e.Attributes, Audience: e.Audience, Expires: time.Unix(e.Expires, 0)}
		p := [8]byte(h[:8])
		s.byPrefix[p] = append(s.byPrefix[p], entry{hash: h, key: k})
	}
	return s
}

func (v *Verifier) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.caURL+path, nil)
	if err != nil {
		return nil, errorf("%w", err)
	}
	resp, err := v.hc.Do(req)
	if err != nil {
		return nil, errorf("fetching %s: %w", v.caURL+path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxSetBytes+1))
	if err != nil {
		return nil, errorf("reading %s: %w", v.caURL+path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errorf("GET %s: %s: %s", v.caURL+path, resp.Status, truncate(strings.TrimSpace(string(b))))
	}
	if len(b) > MaxSetBytes {
		return nil, errorf("%s is larger than %d bytes", v.caURL+path, MaxSetBytes)
	}
	return b, nil
}

// Run refreshes now and then every refresh interval until ctx ends. A
// failed refresh is logged and keeps the set held, until it goes stale.
func (v *Verifier) Run(ctx context.Context) error {
	do := func() {
		err := v.Refresh(ctx)
		if err != nil && ctx.Err() == nil {
			v.cfg.logger.Warn("API key set refresh failed; keeping the previous set until its next_update", "ca", v.caURL, "error", err.Error())
		}
		if v.cfg.onRefresh != nil {
			v.cfg.onRefresh(err)
		}
	}
	do()
	t := v.cfg.clock.NewTimer(v.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C():
			do()
			t.Reset(v.cfg.interval)
		}
	}
}
