package oauth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/strictjson"
)

// Issuer is an authorization server whose access tokens are accepted.
type Issuer struct {
	// URL is the issuer identifier: a token's iss must equal it exactly,
	// and its metadata is found from it (RFC 8414, then OpenID discovery).
	URL string
	// TrustDomain is the trust domain of the principals its tokens name:
	// a subject that is a SPIFFE ID must lie in it, and any other subject
	// NAME becomes spiffe://TrustDomain/client/NAME. Default: the URL's
	// host name.
	TrustDomain string
}

// ParseIssuer parses "URL" or "URL=TRUST-DOMAIN", the form of the
// --token-issuer flag.
func ParseIssuer(s string) (Issuer, error) {
	is := Issuer{URL: s}
	if i := strings.LastIndex(s, "="); i >= 0 && !strings.ContainsAny(s, "?#") && !strings.Contains(s[i:], "/") {
		is.URL, is.TrustDomain = s[:i], s[i+1:]
		if is.TrustDomain == "" {
			return is, errorf("issuer %q: an empty trust domain after =", s)
		}
	}
	return is, is.check()
}

func (is *Issuer) check() error {
	u, err := url.Parse(is.URL)
	switch {
	case err != nil:
		return errorf("issuer %q: %v", is.URL, err)
	case u.Scheme != "https":
		return errorf("issuer %q: an issuer is an https:// URL (RFC 8414)", is.URL)
	case u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return errorf("issuer %q: want https://HOST[/PATH], without query, fragment or user", is.URL)
	}
	if is.TrustDomain == "" {
		is.TrustDomain = strings.ToLower(u.Hostname())
	}
	if !identity.ValidTrustDomain(is.TrustDomain) {
		return errorf("issuer %q: trust domain %q is not valid: use 1-255 characters of [a-z0-9._-]", is.URL, is.TrustDomain)
	}
	return nil
}

// serverMetadata is what RFC 8414 (and OpenID discovery) metadata says that
// a resource server needs.
type serverMetadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint,omitempty"`
	TokenEndpoint         string `json:"token_endpoint,omitempty"`
}

// issuerState is one issuer's metadata and keys, fetched when first needed
// and kept fresh.
type issuerState struct {
	Issuer
	r *Resource

	mu       sync.Mutex // held while fetching
	meta     *serverMetadata
	keys     atomic.Pointer[keySnapshot]
	lastTry  time.Time // of the last key fetch, successful or not
	lastFail error
}

type keySnapshot struct {
	at   time.Time
	keys []jose.JSONWebKey
}

// maxMetadataBytes bounds a metadata document or key set.
const maxMetadataBytes = 1 << 20

// metadataURLs returns the RFC 8414 and OpenID discovery URLs of issuer.
func metadataURLs(issuer string) []string {
	u, _ := url.Parse(issuer)
	path := strings.TrimSuffix(u.Path, "/")
	oauthURL := *u
	oauthURL.Path = "/.well-known/oauth-authorization-server" + path
	oidcURL := *u
	oidcURL.Path = path + "/.well-known/openid-configuration"
	return []string{oauthURL.String(), oidcURL.String()}
}

// fetchJSON GETs u into v, read strictly.
func (r *Resource) fetchJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.cfg.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return err
	}
	if len(body) > maxMetadataBytes {
		return fmt.Errorf("GET %s: more than %d bytes", u, maxMetadataBytes)
	}
	if set, ok := v.(*jose.JSONWebKeySet); ok {
		// go-jose reads its keys itself (case-sensitively); the checks
		// make sure every reader reads the set alike.
		if err := strictjson.Check(body); err != nil {
			return fmt.Errorf("GET %s: %v", u, err)
		}
		if err := json.Unmarshal(body, set); err != nil {
			return fmt.Errorf("GET %s: %v", u, err)
		}
		return nil
	}
	if err := strictjson.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %v", u, err)
	}
	return nil
}

// metadata returns the issuer's metadata, fetching it on first use. The
// caller holds is.mu.
func (is *issuerState) metadataLocked(ctx context.Context) (*serverMetadata, error) {
	if is.meta != nil {
		return is.meta, nil
	}
	var errs []string
	for _, u := range metadataURLs(is.URL) {
		var m serverMetadata
		if err := is.r.fetchJSON(ctx, u, &m); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if m.Issuer != is.URL {
			// RFC 8414 section 3.3: the issuer must be the one asked
			// about, or an attacker's metadata could be substituted.
			errs = append(errs, fmt.Sprintf("%s names issuer %q, not %q", u, m.Issuer, is.URL))
			continue
		}
		ju, err := url.Parse(m.JWKSURI)
		if err != nil || ju.Scheme != "https" || ju.Host == "" {
			errs = append(errs, fmt.Sprintf("%s: jwks_uri %q is not an https URL", u, m.JWKSURI))
			continue
		}
		is.meta = &m
		return is.meta, nil
	}
	return nil, fmt.Errorf("discovering issuer %s: %s", is.URL, strings.Join(errs, "; "))
}

// key returns the keys of the issuer that may have signed a token with
// key ID kid and algorithm alg. It fetches the keys on first use, when
// they are older than the maximum age, and when none has kid (at most once
// per refetch interval).
func (is *issuerState) key(ctx context.Context, kid, alg string) ([]jose.JSONWebKey, error) {
	now := is.r.cfg.clock.Now()
	snap := is.keys.Load()
	if snap != nil && now.Sub(snap.at) < is.r.cfg.keysMaxAge {
		if ks := match(snap.keys, kid, alg); len(ks) > 0 {
			return ks, nil
		}
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	// Another request may have fetched them meanwhile.
	if s := is.keys.Load(); s != snap {
		snap = s
		if ks := match(snap.keys, kid, alg); len(ks) > 0 {
			return ks, nil
		}
	}
	if !is.lastTry.IsZero() && now.Sub(is.lastTry) < is.r.cfg.refetch {
		// Fetched a moment ago: a key ID still unknown is not the
		// issuer's (yet), and the issuer is not asked again so soon.
		if snap != nil {
			return match(snap.keys, kid, alg), nil
		}
		return nil, is.lastFail
	}
	is.lastTry = now
	keys, err := is.fetchKeysLocked(ctx)
	if err != nil {
		is.lastFail = err
		is.r.cfg.logger.Warn("oauth: fetching the issuer's keys", "issuer", is.URL, "error", err.Error())
		if snap != nil { // keep what was fetched before
			return match(snap.keys, kid, alg), nil
		}
		return nil, err
	}
	is.lastFail = nil
	is.keys.Store(&keySnapshot{at: now, keys: keys})
	is.r.cfg.logger.Info("oauth: fetched the issuer's keys", "issuer", is.URL, "keys", len(keys))
	return match(keys, kid, alg), nil
}

func (is *issuerState) fetchKeysLocked(ctx context.Context) ([]jose.JSONWebKey, error) {
	meta, err := is.metadataLocked(ctx)
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := is.r.fetchJSON(ctx, meta.JWKSURI, &set); err != nil {
		return nil, err
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		// Only public signing keys: a symmetric key in a public set
		// would let anyone sign.
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// match returns the keys of keys that can have signed with kid and alg.
func match(keys []jose.JSONWebKey, kid, alg string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range keys {
		if (kid == "" || k.KeyID == kid) && (k.Algorithm == "" || k.Algorithm == alg) {
			out = append(out, k)
		}
	}
	return out
}

// forIssuer returns the state of the trusted issuer iss, or nil.
func (r *Resource) forIssuer(iss string) *issuerState {
	for _, is := range r.issuers {
		if is.URL == iss {
			return is
		}
	}
	return nil
}

// unmarshalJSON is json.Unmarshal, for the few values already checked by
// strictjson.
var unmarshalJSON = json.Unmarshal
