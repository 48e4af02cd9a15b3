package apikey

import (
	"context"
	"errors"
	"maps"
	"sync"
	"time"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/policy"
)

// Bearer returns v as an oauth.BearerVerifier of the keys that start with
// Prefix, for oauth.WithBearerVerifier(apikey.Prefix, ...): a protected
// resource then takes the CA's API keys beside access tokens.
//
// A key's principal is spiffe://trustDomain/client/NAME (NAME the key's
// name), with the key's roles and attributes plus oauth.issuer (the CA's
// URL), the same Cedar principal type a certificate gives, and
// context.auth "api-key". The oauth.Resource checks the key's audience
// against its own resource identifier (v needs no WithAudience for this),
// its expiry, and counts refusals per source (oauth.WithSource); v's own
// failure limit counts them per source as well, and a source past it is
// answered 429 (an oauth.Error with RetryAfter). The refusals are logged by
// the Resource, never with the key.
func (v *Verifier) Bearer(trustDomain string) (oauth.BearerVerifier, error) {
	if !identity.ValidTrustDomain(trustDomain) {
		return nil, errorf("trust domain %q is not valid: use 1-255 characters of [a-z0-9._-]", truncate(trustDomain))
	}
	return &bearer{v: v, td: trustDomain, toks: map[*Key]*oauth.Token{}}, nil
}

// bearer builds one oauth.Token per key of the set held, so that a key's
// principal is built once (the Guard caches principals by identity).
type bearer struct {
	v  *Verifier
	td string

	mu   sync.Mutex
	snap *snapshot // the set toks was built from
	toks map[*Key]*oauth.Token
}

func (b *bearer) VerifyBearer(ctx context.Context, token string) (*oauth.Token, error) {
	k, err := b.v.counted(WithSource(ctx, oauth.SourceFrom(ctx)), token, false, false)
	if errors.Is(err, ErrRateLimited) {
		wait := time.Second
		if b.v.cfg.failRate < 1 {
			wait = time.Duration(1/b.v.cfg.failRate+0.999) * time.Second
		}
		return nil, &oauth.Error{Code: oauth.CodeInvalidRequest, Description: err.Error(), RetryAfter: wait}
	}
	if err != nil {
		return nil, err
	}
	snap := b.v.cur.Load()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.snap != snap {
		b.snap, b.toks = snap, map[*Key]*oauth.Token{}
	}
	if t := b.toks[k]; t != nil {
		return t, nil
	}
	attrs := maps.Clone(k.Attributes)
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrs["oauth.issuer"] = b.v.caURL
	id := &identity.Identity{ID: identity.ID{TrustDomain: b.td, Kind: identity.KindClient, Name: k.Name},
		Roles: k.Roles, Attributes: attrs, NotAfter: k.Expires}
	t := &oauth.Token{Identity: id, Method: policy.AuthAPIKey, Issuer: b.v.caURL, Subject: k.Name,
		Audience: []string{k.Audience}, Expiry: k.Expires}
	b.toks[k] = t
	return t, nil
}
