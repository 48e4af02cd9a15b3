package trust

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
)

// CRLFetcher is a CRLSource that loads a CRL from a URL (the CA serves DER
// at <ca-url>/crl) or a file, and refreshes it while Run is going. A failed
// refresh keeps the previous CRL; the Verifier's StaleCRLPolicy decides what
// happens once that CRL is too old. Refetching identical bytes keeps the
// same *CRL, so verification caches survive it.
type CRLFetcher struct {
	cfg      sourceConfig
	location string
	client   *http.Client
	cur      atomic.Pointer[CRL]

	mu        sync.Mutex // serializes refreshes and guards lastErr and lastCause
	lastErr   error      // what Refresh returned
	lastCause error      // the same, without the package prefix, for CRL
}

// NewCRLFetcher returns a fetcher for location, an http(s) URL or a file
// path. It loads nothing until Refresh or Run is called. For https URLs pass
// WithHTTPClient (for example CAHTTPClient of the trust bundle) unless the
// CA's certificate chains to the system roots, and WithBundle to refuse
// wrongly signed CRLs at fetch time when the bundle holds their issuer.
func NewCRLFetcher(location string, opts ...SourceOption) (*CRLFetcher, error) {
	if location == "" {
		return nil, errorf("CRL location is empty: give a URL or a file path")
	}
	cfg := newSourceConfig(opts)
	f := &CRLFetcher{cfg: cfg, location: location, client: cfg.client}
	if f.client == nil {
		f.client = http.DefaultClient
	}
	return f, nil
}

// Location returns the URL or path the fetcher reads.
func (f *CRLFetcher) Location() string { return f.location }

// CRL returns the current CRL, or an error when none was loaded yet.
func (f *CRLFetcher) CRL() (*CRL, error) {
	if c := f.cur.Load(); c != nil {
		return c, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lastCause != nil {
		return nil, errorf("no CRL loaded from %s: %w", f.location, f.lastCause)
	}
	return nil, errorf("no CRL loaded from %s yet", f.location)
}

// LastError returns the error of the last refresh, nil after a success.
func (f *CRLFetcher) LastError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

// Refresh loads the CRL once. A CRL whose number is lower than the current
// one's is refused (a replayed older list).
func (f *CRLFetcher) Refresh(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastErr, f.lastCause = nil, f.refresh(ctx)
	if f.lastCause != nil {
		f.lastErr = errorf("CRL from %s: %w", f.location, f.lastCause)
	}
	return f.lastErr
}

// refresh loads the CRL; its errors do not name the location.

func (f *CRLFetcher) refresh(ctx context.Context) error {
	data, err := fetch(ctx, f.client, f.location)
	if err != nil {
		return err
	}
	cur := f.cur.Load()
	if cur != nil && (bytes.Equal(cur.raw, data)) {
		return nil
	}
	c, err := parseCRL(data)
	if err != nil {
		return err
	}
	if cur != nil && bytes.Equal(cur.raw, c.raw) {
		return nil
	}
	if err := f.checkIssuer(c); err != nil {
		return err
	}
	if cur != nil && cur.Number() != nil && c.Number() != nil && c.Number().Cmp(cur.Number()) < 0 {
		return fmt.Errorf("number %v is older than the current %v", c.Number(), cur.Number())
	}
	f.cur.Store(c)
	return nil
}

// Run refreshes now and then at every refresh interval until ctx ends, and
// returns ctx.Err().
func (f *CRLFetcher) Run(ctx context.Context) error {
	return runRefresh(ctx, &f.cfg, "crl "+f.location, f.Refresh)
}

// checkIssuer verifies c against the bundle CA that issued it, when the
// bundle holds one (see WithBundle).
func (f *CRLFetcher) checkIssuer(c *CRL) error {
	if f.cfg.bundle == nil {
		return nil
	}
	b, err := f.cfg.bundle.Bundle()
	if err != nil { //nolint:nilerr // every BundleSource error means "no bundle yet"
		return errors.New("no trust bundle loaded to check its signature against")
	}
	var lastErr error
	for _, set := range [][]*x509.Certificate{b.roots, b.intermediates} {
		for _, ca := range set {
			if !bytes.Equal(ca.RawSubject, c.list.RawIssuer) {
				continue
			}
			if lastErr = c.checkSignatureFrom(ca); lastErr == nil {
				return nil
			}
		}
	}
	return lastErr
}
