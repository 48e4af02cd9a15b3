package trust

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// FileBundleSource is a BundleSource backed by a PEM file, re-read at every
// refresh interval while Run is going (and on Reload). A file that fails to
// parse keeps the previous bundle; an unchanged file keeps the same *Bundle.
type FileBundleSource struct {
	store BundleStore
	cfg   sourceConfig
	path  string

	mu  sync.Mutex
	sum [sha256.Size]byte
}

// NewFileBundleSource loads path and returns a source for it.
func NewFileBundleSource(path string, opts ...SourceOption) (*FileBundleSource, error) {
	s := &FileBundleSource{cfg: newSourceConfig(opts), path: path}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Bundle returns the current bundle.
func (s *FileBundleSource) Bundle() (*Bundle, error) { return s.store.Bundle() }

// Reload re-reads the file now.
func (s *FileBundleSource) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := fetch(context.Background(), nil, s.path)
	if err != nil {
		return errorf("bundle: %v", err)
	}
	sum := sha256.Sum256(data)
	if sum == s.sum {
		return nil
	}
	b, err := parseBundlePEM(data)
	if err != nil {
		return errorf("%s: %w", s.path, err)
	}
	s.sum = sum
	s.store.Set(b)
	return nil
}

// Run reloads at every refresh interval until ctx ends.
func (s *FileBundleSource) Run(ctx context.Context) error {
	return runRefresh(ctx, &s.cfg, "bundle "+s.path, func(context.Context) error { return s.Reload() })
}

// CABundleSource is a BundleSource that fetches the trust bundle from a CA's
// /roots endpoint (HTTPS GET <ca-url>/roots answering
// {"crts":["<PEM>",...]}) at every refresh interval while Run is going.
// Unless WithHTTPClient says otherwise, it checks the CA's TLS certificate
// against its own current bundle, so the initial bundle is the bootstrap
// trust and later fetches follow root rotations.
type CABundleSource struct {
	store  BundleStore
	cfg    sourceConfig
	url    string
	client *http.Client
	mu     sync.Mutex
}

// NewCABundleSource returns a source for the CA at caURL, starting from
// initial (which may be nil only when WithHTTPClient is given).
func NewCABundleSource(caURL string, initial *Bundle, opts ...SourceOption) (*CABundleSource, error) {
	s := &CABundleSource{cfg: newSourceConfig(opts), url: strings.TrimSuffix(caURL, "/") + "/roots"}
	s.client = s.cfg.client
	if initial != nil {
		s.store.Set(initial)
	}
	if s.client == nil {
		if initial == nil {
			return nil, errorf("CA bundle source for %s needs an initial bundle or an HTTP client", caURL)
		}
		s.client = CAHTTPClient(&s.store, WithClock(s.cfg.clock))
	}
	return s, nil
}

// Bundle returns the current bundle.
func (s *CABundleSource) Bundle() (*Bundle, error) { return s.store.Bundle() }

// Refresh fetches the roots now.
func (s *CABundleSource) Refresh(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := fetch(ctx, s.client, s.url)
	if err != nil {
		return errorf("bundle: %v", err)
	}
	var resp struct {
		Certificates []string `json:"crts"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return errorf("bundle from %s: %v", s.url, err)
	}
	var pemData bytes.Buffer
	for _, c := range resp.Certificates {
		pemData.WriteString(c)
		pemData.WriteByte('\n')
	}
	b, err := parseBundlePEM(pemData.Bytes())
	if err != nil {
		return errorf("bundle from %s: %w", s.url, err)
	}
	if cur, _ := s.store.Bundle(); cur != nil && slices.EqualFunc(cur.roots, b.roots, (*x509.Certificate).Equal) {
		return nil
	}
	s.store.Set(b)
	return nil
}

// Run refreshes now and then at every refresh interval until ctx ends.
func (s *CABundleSource) Run(ctx context.Context) error {
	return runRefresh(ctx, &s.cfg, "bundle "+s.url, s.Refresh)
}
