package oauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpca/mcpca/internal/strictjson"
)

// introspection is the RFC 7662 set-up of WithIntrospection.
type introspection struct {
	issuer         string
	clientID       string
	secret         string
	maxCache       time.Duration
	endpointCached string
}

// DefaultIntrospectionCache bounds how long an introspected token is
// believed without asking again, when it lives longer: a token the
// authorization server revokes stops working within this bound.
const DefaultIntrospectionCache = time.Minute

// WithIntrospection verifies opaque (non-JWT) access tokens by asking the
// introspection endpoint (RFC 7662) of issuer, one of the trusted issuers,
// found in its metadata, authenticating as clientID with secret
// (client_secret_basic). An active answer is cached until the token
// expires or for maxCache (DefaultIntrospectionCache when 0), whichever
// comes first; inactive answers are not cached. Without it opaque tokens
// are refused.
func WithIntrospection(issuer, clientID, secret string, maxCache time.Duration) Option {
	return optionFunc(func(c *config) {
		if maxCache <= 0 {
			maxCache = DefaultIntrospectionCache
		}
		c.introspect = &introspection{issuer: issuer, clientID: clientID, secret: secret, maxCache: maxCache}
	})
}

// introspected is a cached introspection answer.
type introspected struct {
	t     *Token
	until time.Time
}

// maxIntrospectionBytes bounds an introspection response.
const maxIntrospectionBytes = 64 << 10

// introspect asks the issuer about an opaque token.
func (r *Resource) introspect(ctx context.Context, token string, now time.Time) (*Token, error) {
	in := r.cfg.introspect
	r.mu.Lock()
	e, ok := r.opaque[token]
	r.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.t, nil
	}
	is := r.forIssuer(in.issuer)
	is.mu.Lock()
	meta, err := is.metadataLocked(ctx)
	is.mu.Unlock()
	if err != nil {
		return nil, invalidToken("the token cannot be introspected: %v", err)
	}
	if meta.IntrospectionEndpoint == "" {
		return nil, invalidToken("issuer %s publishes no introspection_endpoint", is.URL)
	}
	body, err := r.postIntrospection(ctx, meta.IntrospectionEndpoint, token)
	if err != nil {
		return nil, invalidToken("introspecting the token at %s: %v", is.URL, err)
	}
	body, active, err := introspectionClaims(body)
	if !active {
		return nil, invalidToken("issuer %s says the token is not active", is.URL)
	}
	if err != nil {
		return nil, invalidToken("introspection answer: %v", err)
	}
	t, c, err := mapClaims(body, is.Issuer, r.cfg.roleClaims)
	if err != nil {
		return nil, err
	}
	if c.Issuer != "" && c.Issuer != is.URL {
		return nil, invalidToken("introspection names issuer %q, want %q", truncate(c.Issuer), is.URL)
	}
	t.Issuer = is.URL
	t.Identity.Attributes["oauth.issuer"] = is.URL
	until := now.Add(in.maxCache)
	if !t.Expiry.IsZero() && t.Expiry.Before(until) {
		until = t.Expiry
	}
	r.mu.Lock()
	if len(r.opaque) >= r.cfg.maxCache {
		r.opaque = map[string]introspected{}
	}
	r.opaque[token] = introspected{t: t, until: until}
	r.mu.Unlock()
	return t, nil
}

func (r *Resource) postIntrospection(ctx context.Context, endpoint, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	in := r.cfg.introspect
	req.SetBasicAuth(url.QueryEscape(in.clientID), url.QueryEscape(in.secret))
	// A redirect is not followed: it would carry the token (and, on the
	// same host, the client's credentials) to another endpoint.
	client := *r.cfg.client
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, fmt.Errorf("%s to %q: a redirect is not followed (it would send the token elsewhere)", resp.Status, truncate(resp.Header.Get("Location")))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	if len(body) > maxIntrospectionBytes {
		return nil, fmt.Errorf("the answer is over %d bytes", maxIntrospectionBytes)
	}
	if err := strictjson.Check(body); err != nil {
		return nil, err
	}
	return body, nil
}

// introspectionClaims reads a checked RFC 7662 answer: active reports
// whether it says "active": true; the claims to map are the answer, with
// client_id as sub when it names no sub (RFC 9068 section 2.2: the subject
// of a client credentials token is its client).
func introspectionClaims(body []byte) (claims []byte, active bool, err error) {
	if v, ok := strictjson.Lookup(body, "active"); !ok || string(v) != "true" {
		return nil, false, nil
	}
	if _, ok := strictjson.Lookup(body, "sub"); !ok {
		if v, ok := strictjson.Lookup(body, "client_id"); ok {
			body = append([]byte(`{"sub":`+string(v)+`,`), strings.TrimPrefix(strings.TrimSpace(string(body)), "{")...)
			if err := strictjson.Check(body); err != nil {
				return nil, true, err
			}
		}
	}
	return body, true, nil
}
