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

// CRLFetcher is a CRLSetSource that loads a CRL from a URL (the CA serves DER
// at <ca-url>/crl) or a file, and refreshes it while Run is going. It asks
// the URL for CRLSetMediaType first, and reads a file of several PEM CRLs:
// a CA in rotation answers one CRL per intermediate it holds, so leaves of
// an old intermediate stay verifiable (see ParseCRLs). A failed
// refresh keeps the previous CRL; the Verifier's StaleCRLPolicy decides what
// happens once that CRL is too old. Refetching identical bytes keeps the
// same *CRL, so verification caches survive it.
type CRLFetcher struct {
	cfg      sourceConfig
	location string
	client   *http.Client
	cur      atomic.Pointer[crlSet]

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

// crlSet is what one fetch loaded: its bytes and its CRLs (at least one).
type crlSet struct {
	raw  []byte
	crls []*CRL
}

// CRL returns the current (first) CRL, or an error when none was loaded
// yet.
func (f *CRLFetcher) CRL() (*CRL, error) {
	l, err := f.CRLs()
	if err != nil {
		return nil, err
	}
	return l[0], nil
}

// CRLs returns the current CRLs (one per issuing CA the location served),
// or an error when none was loaded yet. The slice must not be modified.
func (f *CRLFetcher) CRLs() ([]*CRL, error) {
	if c := f.cur.Load(); c != nil {
		return c.crls, nil
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
	data, err := fetchAccept(ctx, f.client, f.location, CRLSetMediaType+", application/pkix-crl;q=0.9")
	if err != nil {
		return err
	}
	cur := f.cur.Load()
	if cur != nil && bytes.Equal(cur.raw, data) {
		return nil
	}
	crls, err := parseCRLs(data)
	if err != nil {
		return err
	}
	next := &crlSet{raw: bytes.Clone(data), crls: crls}
	for i, c := range crls {
		if cur != nil {
			// An unchanged CRL keeps its *CRL, so verification caches
			// survive a set where only another issuer's list changed.
			if same := cur.find(c); same != nil && bytes.Equal(same.raw, c.raw) {
				crls[i] = same
				continue
			}
		}
		if err := f.checkIssuer(c); err != nil {
			return err
		}
		if cur == nil {
			continue
		}
		if old := cur.find(c); old != nil && old.Number() != nil && c.Number() != nil && c.Number().Cmp(old.Number()) < 0 {
			return fmt.Errorf("number %v is older than the current %v", c.Number(), old.Number())
		}
	}
	f.cur.Store(next)
	return nil
}

// find returns the CRL of s with c's issuer and key, or nil.
func (s *crlSet) find(c *CRL) *CRL {
	for _, o := range s.crls {
		if o.sameIssuer(c) {
			return o
		}
	}
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
