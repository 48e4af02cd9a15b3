package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mcpca/mcpca/identity/oauth"
	"github.com/mcpca/mcpca/internal/caclient"
)

// checkOAuthFlags refuses the flag combinations --oauth cannot serve.
func checkOAuthFlags(f *mcpFlags) error {
	switch {
	case !f.oauth && (f.caURL != "" || f.scope != ""):
		return errors.New("--ca-url and --scope need --oauth")
	case !f.oauth:
		return nil
	case f.tokenFile != "":
		return errors.New("--oauth and --token-file: present one token, fetched from the CA or read from a file")
	case f.cert == "" || f.key == "":
		return errors.New("--oauth needs --cert and --key: the CA issues the token to the certificate's holder, bound to that certificate (RFC 8705)")
	}
	return nil
}

// fetchOAuthToken gets an access token for the server at f.url from the CA's
// token endpoint (client credentials, tls_client_auth with pair), bound to
// pair's certificate. The server's RFC 9728 metadata, fetched over hc (the
// server's certificate checked as for the MCP connection), gives the
// resource the token is for and, without --ca-url, the authorization
// server: it must name exactly one. The CA's TLS certificate must chain to
// roots.
func fetchOAuthToken(ctx context.Context, f *mcpFlags, pair *tls.Certificate, roots []*x509.Certificate, hc *http.Client) (string, error) {
	u, _ := url.Parse(f.url)
	mu := *u
	mu.Path, mu.RawPath, mu.RawQuery = oauth.WellKnownPath+strings.TrimSuffix(u.Path, "/"), "", ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, mu.String(), nil)
	if err != nil {
		return "", fmt.Errorf("--oauth: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("--oauth: reading the server's OAuth metadata at %s: %w", mu.String(), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var md oauth.Metadata
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &md) != nil || md.Resource == "" {
		return "", fmt.Errorf("--oauth: the server publishes no OAuth protected resource metadata at %s (%s): does it take tokens (--token-issuer)?", mu.String(), resp.Status)
	}
	caURL := strings.TrimRight(f.caURL, "/")
	if caURL == "" {
		if len(md.AuthorizationServers) != 1 {
			return "", fmt.Errorf("--oauth: the server names %d authorization servers (%s): choose the CA with --ca-url", len(md.AuthorizationServers), strings.Join(md.AuthorizationServers, ", "))
		}
		caURL = md.AuthorizationServers[0]
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	cl, err := caclient.New(caURL, pool)
	if err != nil {
		return "", fmt.Errorf("--oauth: %w", err)
	}
	at, err := cl.AccessToken(ctx, *pair, md.Resource, f.scope)
	if err != nil {
		return "", fmt.Errorf("--oauth: %w", err)
	}
	return at.AccessToken, nil
}
