// Package caclient is a small client for the step-ca HTTP API that mcpca's CA
// serves: sign (enrol with a token), renew and rekey over mTLS, revoke, roots,
// the CRL and bootstrap by fingerprint. It speaks the wire format of step-ca
// with its own types, so agents and CLIs need not link step-ca itself.
package caclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/pemfile"
)

// maxResponse bounds what the client reads from the CA.
const maxResponse = 4 << 20

// APIError is an error answer of the CA (public as agent.APIError).
type APIError struct {
	Status  int    // the HTTP status, e.g. 401 for a spent token, 403 for a refused identity
	Message string // the CA's message, e.g. "ca: token rejected: token already used"
	// RetryAfter is the wait the CA asked for with a Retry-After header
	// (503 when it is at its limit of requests in flight); 0 when none.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	return fmt.Sprintf("the CA answered %d: %s", e.Status, e.Message)
}

// Client talks to one CA.
type Client struct {
	url     string
	roots   *x509.CertPool
	timeout time.Duration
	clock   clock.Clock
}

// Option configures New.
type Option func(*Client)

// WithClock sets the clock that decides whether a certificate has expired
// before it is presented to the CA. Default clock.Real.
func WithClock(c clock.Clock) Option { return func(cl *Client) { cl.clock = clock.Or(c) } }

// New returns a client for the CA at caURL ("https://host:port") whose TLS
// certificate must chain to roots.
func New(caURL string, roots *x509.CertPool, opts ...Option) (*Client, error) {
	if !strings.HasPrefix(caURL, "https://") {
		return nil, fmt.Errorf("CA URL %q must start with https://", caURL)
	}
	if roots == nil {
		return nil, errors.New("no root certificates to trust the CA with")
	}
	c := &Client{url: strings.TrimRight(caURL, "/"), roots: roots, timeout: 30 * time.Second, clock: clock.Real{}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// URL returns the CA URL.
func (c *Client) URL() string { return c.url }

func (c *Client) httpClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cc := *cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cc, nil }
	}
	return &http.Client{
		Timeout:   c.timeout,
		Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, DisableKeepAlives: cert != nil},
	}
}

type signResponse struct {
	Crt       string   `json:"crt"`
	CA        string   `json:"ca"`
	CertChain []string `json:"certChain"`
}

func (r *signResponse) chain() ([]*x509.Certificate, error) {
	pems := r.CertChain
	if len(pems) == 0 {
		pems = []string{r.Crt, r.CA}
	}
	var out []*x509.Certificate
	for _, p := range pems {
		certs, err := pemfile.ParseCertificates([]byte(p), pemfile.SkipOthers)
		if err != nil {
			return nil, err
		}
		out = append(out, certs...)
	}
	if len(out) == 0 {
		return nil, errors.New("the CA answered without a certificate")
	}
	return out, nil
}

func (c *Client) do(ctx context.Context, cert *tls.Certificate, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, rd)
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.httpClient(cert)
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return explainTransport(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("reading the CA's answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return &APIError{Status: resp.StatusCode, Message: e.Message, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), c.clock.Now())}
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the CA's answer is not valid JSON: %w", err)
	}
	return nil
}

// maxRetryAfter caps the wait a CA may ask for.
const maxRetryAfter = 10 * time.Minute

// retryAfter reads a Retry-After header (RFC 9110: seconds, or an HTTP
// date), capped at maxRetryAfter; 0 when absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// explainTransport names the usual causes of TLS failures.
func explainTransport(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "expired certificate"):
		return fmt.Errorf("the CA refused the client certificate because it has expired: enrol again with a new token (%w)", err)
	case strings.Contains(msg, "unknown certificate authority") || strings.Contains(msg, "bad certificate"):
		return fmt.Errorf("the CA refused the client certificate: it is not issued by this CA or is invalid (%w)", err)
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return fmt.Errorf("the CA's TLS certificate does not chain to the given root: wrong --root or wrong CA (%w)", err)
	}
	return fmt.Errorf("%w", err)
}

// Sign redeems a one-time token: the CA signs csr with the identity the token
// grants. It returns the leaf followed by the intermediates.
func (c *Client) Sign(ctx context.Context, csr *x509.CertificateRequest, token string) ([]*x509.Certificate, error) {
	var resp signResponse
	body := map[string]string{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw})), "ott": token}
	if err := c.do(ctx, nil, http.MethodPost, "/1.0/sign", body, &resp); err != nil {
		return nil, err
	}
	return resp.chain()
}

// Renew presents cert over mTLS and returns its successor: same identity,
// roles and attributes, same key, a new validity period.
func (c *Client) Renew(ctx context.Context, cert tls.Certificate) ([]*x509.Certificate, error) {
	if err := c.checkUsable(cert); err != nil {
		return nil, err
	}
	var resp signResponse
	if err := c.do(ctx, &cert, http.MethodPost, "/1.0/renew", struct{}{}, &resp); err != nil {
		return nil, err
	}
	return resp.chain()
}

// Rekey is Renew with a new key: csr carries the new public key.
func (c *Client) Rekey(ctx context.Context, cert tls.Certificate, csr *x509.CertificateRequest) ([]*x509.Certificate, error) {
	if err := c.checkUsable(cert); err != nil {
		return nil, err
	}
	var resp signResponse
	body := map[string]string{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw}))}
	if err := c.do(ctx, &cert, http.MethodPost, "/1.0/rekey", body, &resp); err != nil {
		return nil, err
	}
	return resp.chain()
}

// checkUsable gives a clear error for a certificate that has expired before
// sending it to the CA, which would only fail the handshake.
func (c *Client) checkUsable(cert tls.Certificate) error {
	leaf := cert.Leaf
	if leaf == nil && len(cert.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	if leaf == nil {
		return errors.New("no certificate to present")
	}
	if now := c.clock.Now(); now.After(leaf.NotAfter) {
		return fmt.Errorf("the certificate expired at %s and can no longer renew: enrol again with a new token", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// RevokeSelf revokes cert by presenting it (and its key) over mTLS.
func (c *Client) RevokeSelf(ctx context.Context, cert tls.Certificate, reason string) error {
	if err := c.checkUsable(cert); err != nil {
		return err
	}
	leaf := cert.Leaf
	if leaf == nil {
		leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	body := map[string]any{"serial": leaf.SerialNumber.String(), "reason": reason, "passive": true}
	return c.do(ctx, &cert, http.MethodPost, "/1.0/revoke", body, nil)
}

// Revoke revokes the certificate with the given decimal serial using an
// operator's revocation token.
func (c *Client) Revoke(ctx context.Context, serial, token, reason string) error {
	body := map[string]any{"serial": serial, "ott": token, "reason": reason, "passive": true}
	return c.do(ctx, nil, http.MethodPost, "/1.0/revoke", body, nil)
}

// RevokeIdentity revokes every unexpired certificate of the SPIFFE ID id
// with an operator's revocation token whose subject is id, and returns the
// decimal serials the CA revoked.
func (c *Client) RevokeIdentity(ctx context.Context, id, token, reason string) ([]string, error) {
	body := map[string]any{"identity": id, "ott": token, "reason": reason, "passive": true}
	var resp struct {
		Serials []string `json:"serials"`
	}
	if err := c.do(ctx, nil, http.MethodPost, "/1.0/revoke", body, &resp); err != nil {
		return nil, err
	}
	return resp.Serials, nil
}

// APIKeys posts an API key request (ca.APIKeyRequest: the operation, its
// operator token) to /1.0/apikeys and decodes the answer into out.
func (c *Client) APIKeys(ctx context.Context, req, out any) error {
	return c.do(ctx, nil, http.MethodPost, "/1.0/apikeys", req, out)
}

// AccessToken is the token endpoint's answer (RFC 6749 §5.1).
type AccessToken struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// TokenError is the token endpoint's refusal (RFC 6749 §5.2).
type TokenError struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("the CA's token endpoint answered %d %s: %s", e.Status, e.Code, e.Description)
}

// AccessToken asks the CA's token endpoint for an access token for
// resource (RFC 8707), authenticating with cert over mTLS (client
// credentials, tls_client_auth). scope may be empty.
func (c *Client) AccessToken(ctx context.Context, cert tls.Certificate, resource, scope string) (*AccessToken, error) {
	if err := c.checkUsable(cert); err != nil {
		return nil, err
	}
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resource}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/1.0/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hc := c.httpClient(&cert)
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return nil, explainTransport(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("reading the CA's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		te := &TokenError{Status: resp.StatusCode}
		if json.Unmarshal(b, te) != nil || te.Code == "" {
			te.Code, te.Description = "invalid_response", strings.TrimSpace(string(b))
		}
		return nil, te
	}
	var at AccessToken
	if err := json.Unmarshal(b, &at); err != nil || at.AccessToken == "" {
		return nil, fmt.Errorf("the CA's token answer is not an access token: %s", strings.TrimSpace(string(b)))
	}
	return &at, nil
}

// Roots returns the CA's current root certificates.
func (c *Client) Roots(ctx context.Context) ([]*x509.Certificate, error) {
	var resp struct {
		Crts []string `json:"crts"`
	}
	if err := c.do(ctx, nil, http.MethodGet, "/1.0/roots", nil, &resp); err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for _, p := range resp.Crts {
		certs, err := pemfile.ParseCertificates([]byte(p), pemfile.SkipOthers)
		if err != nil {
			return nil, err
		}
		out = append(out, certs...)
	}
	return out, nil
}

// CRL returns the CA's current certificate revocation list (DER).
func (c *Client) CRL(ctx context.Context) ([]byte, error) {
	var b []byte
	if err := c.do(ctx, nil, http.MethodGet, "/1.0/crl", nil, &b); err != nil {
		return nil, err
	}
	return b, nil
}

// Bootstrap fetches the root certificate of the CA at caURL and accepts it
// only if its SHA-256 fingerprint (hex) is the one given, then checks that
// the CA's TLS certificate chains to it.
func Bootstrap(ctx context.Context, caURL, fingerprint string) (*x509.Certificate, error) {
	if !strings.HasPrefix(caURL, "https://") {
		return nil, fmt.Errorf("CA URL %q must start with https://", caURL)
	}
	want := strings.ToLower(strings.ReplaceAll(fingerprint, ":", ""))
	if b, err := hex.DecodeString(want); err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q is not a SHA-256 in hex", fingerprint)
	}
	var serverChain []*x509.Certificate
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The root is not known yet: the chain is checked against the
		// fingerprinted root below, before anything is trusted.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			serverChain = cs.PeerCertificates
			return nil
		},
	}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(caURL, "/")+"/root/"+want, nil)
	if err != nil {
		return nil, fmt.Errorf("%w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the CA at %s has no root with fingerprint %s (HTTP %d)", caURL, want, resp.StatusCode)
	}
	var body struct {
		CA string `json:"ca"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("the CA's answer is not valid JSON: %w", err)
	}
	certs, err := pemfile.ParseCertificates([]byte(body.CA), pemfile.SkipOthers)
	if err != nil || len(certs) != 1 {
		return nil, errors.New("the CA's answer holds no root certificate")
	}
	root := certs[0]
	sum := sha256.Sum256(root.Raw)
	if got := hex.EncodeToString(sum[:]); got != want {
		return nil, fmt.Errorf("the root served by %s has fingerprint %s, not %s: refusing it", caURL, got, want)
	}
	if len(serverChain) == 0 {
		return nil, errors.New("the CA presented no TLS certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range serverChain[1:] {
		inter.AddCert(c)
	}
	if _, err := serverChain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter}); err != nil {
		return nil, fmt.Errorf("the CA's TLS certificate does not chain to the fingerprinted root: %w", err)
	}
	return root, nil
}
