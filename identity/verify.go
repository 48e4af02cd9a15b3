package identity

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/certname"
)

// Verifier verifies the certificate chains peers present against the trust
// bundle its Source holds at the time of each call, and returns the
// Identity the leaf carries. It enforces:
//
//   - the X509-SVID shape (FromCertificate): one spiffe URI SAN, not a CA,
//     digitalSignature and no keyCertSign/cRLSign;
//   - the expected trust domains;
//   - the key policy (CheckPublicKey) on the leaf's public key;
//   - the peer's role: clientAuth for clients; serverAuth and a server
//     identity for servers;
//   - no unknown critical extension anywhere in the chain;
//   - a cap on chain length;
//   - validity at the Verifier's clock;
//   - revocation, against the CRLs of WithCRL, whose signature must verify
//     with the leaf's issuer in the verified chain and which must be fresh
//     (see StaleCRLPolicy).
//
// Results are cached by leaf fingerprint; the cache empties whenever the
// bundle or a CRL changes, and a cached result is re-checked against the
// clock and CRL freshness. A Verifier is safe for concurrent use.
type Verifier struct {
	cfg   verifyConfig
	src   trust.BundleSource
	tds   map[string]bool
	cache *verifyCache
}

// NewVerifier returns a Verifier trusting the bundles src supplies. It needs
// WithTrustDomains or AnyTrustDomain.
func NewVerifier(src trust.BundleSource, opts ...VerifyOption) (*Verifier, error) {
	cfg := verifyConfig{
		oids:      DefaultOIDs,
		maxChain:  DefaultMaxChainLength,
		grace:     DefaultCRLGrace,
		cacheSize: DefaultCacheSize,
	}
	for _, o := range opts {
		o.applyVerify(&cfg)
	}
	cfg.clock = clock.Or(cfg.clock)
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if src == nil {
		return nil, errorf("verifier needs a trust bundle source")
	}
	if len(cfg.trustDomains) == 0 && !cfg.anyTD {
		return nil, errorf("verifier needs the trust domains to accept: use WithTrustDomains (or AnyTrustDomain)")
	}
	if cfg.maxChain < 2 {
		return nil, errorf("maximum chain length %d is below 2 (a leaf and a root)", cfg.maxChain)
	}
	if cfg.grace < 0 {
		return nil, errorf("CRL grace period %v is negative", cfg.grace)
	}
	v := &Verifier{cfg: cfg, src: src, tds: map[string]bool{}}
	for _, td := range cfg.trustDomains {
		if !ValidTrustDomain(td) {
			return nil, errorf("invalid trust domain %q: use 1-255 characters of [a-z0-9._-]", truncate(td))
		}
		v.tds[td] = true
	}
	if cfg.cacheSize > 0 {
		v.cache = newVerifyCache(cfg.cacheSize)
	}
	return v, nil
}

// Verify verifies chain, the certificates a peer presented (leaf first),
// for a peer acting as kind as: KindClient for the clients a server accepts,
// KindServer for the servers a client connects to.
func (v *Verifier) Verify(chain []*x509.Certificate, as Kind) (*Identity, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, refusal(ReasonMalformedChain, ID{}, "peer presented no certificate")
	}
	for _, c := range chain[1:] {
		if c == nil {
			return nil, refusal(ReasonMalformedChain, ID{}, "peer chain holds a nil certificate")
		}
	}
	if !as.Valid() {
		return nil, refusal(ReasonMalformedChain, ID{}, "invalid peer kind %q: must be %q or %q", truncate(string(as)), KindClient, KindServer)
	}
	b, err := v.src.Bundle()
	if err != nil {
		return nil, err
	}
	now := v.cfg.clock.Now()
	var crlArr [4]*trust.CRL
	var errArr [4]error
	crls, crlErrs := crlArr[:0], errArr[:0]
	for _, s := range v.cfg.crls {
		if set, ok := s.(trust.CRLSetSource); ok {
			l, err := set.CRLs()
			if err != nil {
				crls, crlErrs = append(crls, nil), append(crlErrs, err)
			}
			for _, c := range l {
				crls, crlErrs = append(crls, c), append(crlErrs, nil)
			}
			continue
		}
		c, err := s.CRL()
		crls, crlErrs = append(crls, c), append(crlErrs, err)
	}
	leaf := chain[0]
	var fp [sha256.Size]byte
	if v.cache != nil {
		fp = v.cache.fingerprint(leaf)
	} else {
		fp = sha256.Sum256(leaf.Raw)
	}
	key := cacheKey{fp: fp, as: as}
	if v.cache != nil {
		if e := v.cache.get(b, crls, key, chain[1:]); e != nil && e.usable(now, &v.cfg) {
			return e.id, nil
		}
	}
	e, err := v.verify(b, crls, crlErrs, chain, as, fp, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(b, crls, key, e)
	}
	return e.id, nil
}

func (v *Verifier) verify(b *trust.Bundle, crls []*trust.CRL, crlErrs []error, chain []*x509.Certificate, as Kind, fp [sha256.Size]byte, now time.Time) (*cacheEntry, error) {
	leaf := chain[0]
	if len(chain) > v.cfg.maxChain {
		return nil, refusal(ReasonMalformedChain, ID{}, "peer chain has %d certificates, the limit is %d", len(chain), v.cfg.maxChain)
	}
	id, err := parseCertificate(leaf, v.cfg.oids, fp)
	if err != nil {
		r := ReasonNotSVID
		if errors.Is(err, ErrMalformedExtension) || errors.Is(err, ErrBounds) {
			r = ReasonBadExtension
		}
		return nil, &VerifyError{Reason: r, err: err}
	}
	sid := id.ID.String()
	if !v.cfg.anyTD && !v.tds[id.ID.TrustDomain] {
		return nil, refusal(ReasonTrustDomain, id.ID, "%s: trust domain %q is not trusted (trusted: %s)", sid, id.ID.TrustDomain, v.trustedList())
	}
	if err := checkPublicKey(leaf.PublicKey); err != nil {
		return nil, refusal(ReasonWeakKey, id.ID, "%s: certificate refused: %w", sid, err)
	}
	eku, ekuName := x509.ExtKeyUsageClientAuth, "clientAuth"
	if as == KindServer {
		if id.ID.Kind != KindServer {
			return nil, refusal(ReasonWrongUsage, id.ID, "%s: a %s identity cannot act as a server", sid, id.ID.Kind)
		}
		eku, ekuName = x509.ExtKeyUsageServerAuth, "serverAuth"
	}
	if !slices.Contains(leaf.ExtKeyUsage, eku) {
		return nil, refusal(ReasonWrongUsage, id.ID, "%s: certificate lacks the %s extended key usage", sid, ekuName)
	}
	for _, c := range chain {
		if len(c.UnhandledCriticalExtensions) > 0 {
			return nil, refusal(ReasonBadExtension, id.ID, "%s: unknown critical extension %s", certname.Of(c), c.UnhandledCriticalExtensions[0])
		}
	}
	if now.Before(leaf.NotBefore) {
		return nil, refusal(ReasonNotYetValid, id.ID, "%s: certificate is not valid before %s (now %s)", sid, stamp(leaf.NotBefore), stamp(now))
	}
	if now.After(leaf.NotAfter) {
		return nil, refusal(ReasonExpired, id.ID, "%s: certificate expired at %s (now %s)", sid, stamp(leaf.NotAfter), stamp(now))
	}
	inter := b.IntermediatePool()
	if len(chain) > 1 {
		inter = b.IntermediatePool().Clone()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         b.RootPool(),
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{eku},
	})
	if err != nil {
		return nil, refusal(ReasonUntrusted, id.ID, "%s: chain does not verify: %v", sid, err)
	}
	best := chains[0]
	for _, c := range chains[1:] {
		if len(c) < len(best) {
			best = c
		}
	}
	if len(best) > v.cfg.maxChain {
		return nil, refusal(ReasonMalformedChain, id.ID, "%s: verified chain has %d certificates, the limit is %d", sid, len(best), v.cfg.maxChain)
	}
	for _, c := range best[1:] { // the bundle's certificates too
		if len(c.UnhandledCriticalExtensions) > 0 {
			return nil, refusal(ReasonBadExtension, id.ID, "%s: unknown critical extension %s in %s", sid, c.UnhandledCriticalExtensions[0], certname.Of(c))
		}
	}
	crl, err := v.checkRevocation(id.ID, leaf, best[1], crls, crlErrs, now)
	if err != nil {
		return nil, err
	}
	e := &cacheEntry{id: id, crl: crl, notBefore: leaf.NotBefore, notAfter: leaf.NotAfter}
	for _, c := range best[1:] {
		if c.NotBefore.After(e.notBefore) {
			e.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(e.notAfter) {
			e.notAfter = c.NotAfter
		}
	}
	for _, c := range chain[1:] {
		e.rest = append(e.rest, c.Raw)
	}
	return e, nil
}

// checkRevocation returns the CRL that vouched for leaf (nil when none is
// configured, or when status is unknown and the policy is fail-open).
func (v *Verifier) checkRevocation(pid ID, leaf, issuer *x509.Certificate, crls []*trust.CRL, crlErrs []error, now time.Time) (*trust.CRL, error) {
	if len(v.cfg.crls) == 0 {
		return nil, nil
	}
	sid := pid.String()
	var unknown error
	var stale *trust.CRL
	for i, c := range crls {
		if c == nil {
			unknown = crlErrs[i]
			continue
		}
		if !c.Covers(leaf) {
			continue
		}
		if err := c.CheckSignatureFrom(issuer); err != nil {
			unknown = err
			continue
		}
		if at, revoked := c.Revoked(leaf.SerialNumber); revoked {
			return nil, refusal(ReasonRevoked, pid, "%s: certificate (serial %s) is revoked since %s", sid, leaf.SerialNumber.Text(16), stamp(at))
		}
		if c.Stale(now, v.cfg.grace) {
			unknown = fmt.Errorf("the CRL is stale: nextUpdate %s plus the grace period of %s has passed (now %s)", stamp(c.NextUpdate()), v.cfg.grace, stamp(now))
			stale = c
			continue
		}
		return c, nil
	}
	if unknown == nil {
		unknown = fmt.Errorf("no CRL covers the issuer %s", certname.Of(issuer))
	}
	if v.cfg.stalePolicy == CRLFailOpen {
		v.cfg.logger.Warn("accepting a certificate whose revocation status is unknown (fail-open)", "id", sid, "err", unknown)
		return stale, nil
	}
	return nil, refusal(ReasonRevocationUnknown, pid, "%s: revocation status unknown: %w", sid, unknown)
}

func (v *Verifier) trustedList() string {
	tds := slices.Sorted(func(yield func(string) bool) {
		for td := range v.tds {
			if !yield(td) {
				return
			}
		}
	})
	return strings.Join(tds, ", ")
}

// PeerIdentity returns the verified identity of the peer of a TLS connection
// made with this Verifier's TLS helpers. It verifies again (normally a cache
// hit), so calling it per request also refuses a peer whose certificate has
// since expired or been revoked. The peer is checked in the role its SVID
// names: a server identity as a server, a client identity as a client.
func (v *Verifier) PeerIdentity(cs *tls.ConnectionState) (*Identity, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil, refusal(ReasonMalformedChain, ID{}, "connection has no peer certificate")
	}
	as := KindClient
	if u := cs.PeerCertificates[0].URIs; len(u) == 1 && strings.HasPrefix(u[0].Path, "/server/") {
		as = KindServer
	}
	return v.Verify(cs.PeerCertificates, as)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
