package mcpstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpca/mcpca/identity/apikey"
	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/identity/trust"
)

// caMetadata is what an mcpca CA's RFC 8414 metadata says beyond the
// standard members: where its signed API key set is, and its trust domain.
type caMetadata struct {
	Issuer      string `json:"issuer"`
	APIKeysURI  string `json:"mcpca_apikeys_uri"`
	TrustDomain string `json:"mcpca_trust_domain"`
}

// errNotCA: the issuer's RFC 8414 metadata does not say it is an mcpca CA.
var errNotCA = errors.New("not an mcpca CA")

// fetchCAMetadata reads the RFC 8414 metadata of issuer and returns it
// when it names an mcpca API key set (mcpca_apikeys_uri); errNotCA when
// the issuer answers without one (another authorization server, or one
// with only OpenID discovery); another error when it cannot be asked.
func fetchCAMetadata(ctx context.Context, hc *http.Client, issuer string) (*caMetadata, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, err
	}
	u.Path = "/.well-known/oauth-authorization-server" + strings.TrimSuffix(u.Path, "/")
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot read its metadata (RFC 8414): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errNotCA
	}
	var md caMetadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&md); err != nil || md.APIKeysURI == "" {
		return nil, errNotCA
	}
	if md.Issuer != issuer {
		return nil, fmt.Errorf("its metadata names issuer %q: want exactly %q", md.Issuer, issuer)
	}
	if md.APIKeysURI != issuer+apikey.SetPath {
		return nil, fmt.Errorf("its API key set is at %q, not at %s", md.APIKeysURI, issuer+apikey.SetPath)
	}
	return &md, nil
}

// caAPIKeys finds which of the token issuers are mcpca CAs (their RFC 8414
// metadata names an API key set) and, for each, sets the issuer's trust
// domain to the CA's (unless the flag named it: then they must agree),
// builds an apikey.Verifier of its signed key set, loads the set once (as
// the CRL is, failing Open when it cannot) and returns the resource options
// that take its keys. The verifiers are kept fresh by Run.
func (s *Stack) caAPIKeys(ctx context.Context, issuers []oauth.Issuer, hc *http.Client) ([]oauth.Option, error) {
	var opts []oauth.Option
	for i := range issuers {
		is := &issuers[i]
		md, err := fetchCAMetadata(ctx, hc, is.URL)
		if errors.Is(err, errNotCA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("--token-issuer %s: %w", is.URL, err)
		}
		if len(s.keys) > 0 {
			return nil, fmt.Errorf("--token-issuer %s: a second mcpca CA; API keys are taken from one CA only", is.URL)
		}
		u, _ := url.Parse(is.URL)
		if is.TrustDomain != md.TrustDomain {
			if is.TrustDomain != strings.ToLower(u.Hostname()) {
				return nil, fmt.Errorf("--token-issuer %s=%s: the CA there speaks for trust domain %s", is.URL, is.TrustDomain, md.TrustDomain)
			}
			is.TrustDomain = md.TrustDomain
		}
		vopts := []apikey.Option{apikey.WithHTTPClient(trust.CAHTTPClient(s.bundle)), apikey.WithLogger(s.log)}
		if s.cfg.APIKeyRefresh > 0 {
			vopts = append(vopts, apikey.WithRefreshInterval(s.cfg.APIKeyRefresh))
		}
		v, err := apikey.New(is.URL, nil, vopts...)
		if err != nil {
			return nil, err
		}
		if err := v.Refresh(ctx); err != nil {
			return nil, fmt.Errorf("--token-issuer %s: loading its API key set: %w", is.URL, err)
		}
		bv, err := v.Bearer(is.TrustDomain)
		if err != nil {
			return nil, err
		}
		s.keys = append(s.keys, v)
		s.log.Info("accepting the API keys of the CA", "issuer", is.URL, "trust_domain", is.TrustDomain,
			"refresh", refreshOf(s.cfg.APIKeyRefresh).String())
		opts = append(opts, oauth.WithBearerVerifier(apikey.Prefix, bv))
	}
	return opts, nil
}

func refreshOf(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return apikey.DefaultRefreshInterval
}
