package identity

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"slices"
	"sync"
	"time"

	"github.com/mcpca/mcpca/identity/trust"
)

// verifyCache remembers verified chains for one epoch: one bundle and one
// set of CRLs. When either changes, the next put starts a new epoch and
// drops every entry, and get misses until then.
type verifyCache struct {
	mu     sync.RWMutex
	bundle *trust.Bundle
	crls   []*trust.CRL
	m      map[cacheKey]*cacheEntry
	max    int

	// fps remembers the fingerprints of the leaves seen, by pointer: a TLS
	// connection presents the same *x509.Certificate for every request, so
	// its leaf is hashed once, not per request. Each entry keeps a parsed
	// certificate alive, so the memo is small (maxFingerprints) and starts
	// over when full.
	fpMu sync.RWMutex
	fps  map[*x509.Certificate][sha256.Size]byte
}

type cacheKey struct {
	fp [sha256.Size]byte // leaf fingerprint
	as Kind
}

type cacheEntry struct {
	id                  *Identity
	rest                [][]byte // the intermediates as presented
	notBefore, notAfter time.Time
	crl                 *trust.CRL // the CRL that vouched for the leaf, if any
}

func newVerifyCache(max int) *verifyCache {
	return &verifyCache{m: make(map[cacheKey]*cacheEntry), max: max, fps: make(map[*x509.Certificate][sha256.Size]byte)}
}

// maxFingerprints bounds verifyCache.fps (a few MB of certificates).
const maxFingerprints = 1024

// fingerprint returns the SHA-256 of leaf.Raw, from memory when this leaf
// was seen before.
func (c *verifyCache) fingerprint(leaf *x509.Certificate) [sha256.Size]byte {
	c.fpMu.RLock()
	fp, ok := c.fps[leaf]
	c.fpMu.RUnlock()
	if ok {
		return fp
	}
	fp = sha256.Sum256(leaf.Raw)
	c.fpMu.Lock()
	if len(c.fps) >= maxFingerprints {
		clear(c.fps)
	}
	c.fps[leaf] = fp
	c.fpMu.Unlock()
	return fp
}

func (c *verifyCache) get(b *trust.Bundle, crls []*trust.CRL, k cacheKey, rest []*x509.Certificate) *cacheEntry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.bundle != b || !slices.Equal(c.crls, crls) {
		return nil
	}
	e := c.m[k]
	if e == nil || len(e.rest) != len(rest) {
		return nil
	}
	for i, r := range rest {
		if !bytes.Equal(e.rest[i], r.Raw) {
			return nil
		}
	}
	return e
}

func (c *verifyCache) put(b *trust.Bundle, crls []*trust.CRL, k cacheKey, e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bundle != b || !slices.Equal(c.crls, crls) {
		c.bundle, c.crls = b, append([]*trust.CRL(nil), crls...)
		clear(c.m)
	}
	if len(c.m) >= c.max {
		for old := range c.m { // evict one entry, at random
			delete(c.m, old)
			break
		}
	}
	c.m[k] = e
}

// usable reports whether a cached result still holds at now: the chain is
// within its validity and the CRL that vouched for it is fresh (or the
// policy tolerates a stale one).
func (e *cacheEntry) usable(now time.Time, cfg *verifyConfig) bool {
	if now.Before(e.notBefore) || now.After(e.notAfter) {
		return false
	}
	if e.crl != nil && cfg.stalePolicy == CRLFailClosed && e.crl.Stale(now, cfg.grace) {
		return false
	}
	return true
}
