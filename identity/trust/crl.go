package trust

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpca/mcpca/internal/certname"
)

// CRL is an immutable, parsed certificate revocation list with a generation
// number unique in the process. Its signature is not checked when it is
// parsed: the Verifier checks it against the issuer of each chain it covers.
type CRL struct {
	list       *x509.RevocationList
	raw        []byte
	revoked    map[string]time.Time // serial bytes -> revocation time
	generation uint64
	// sigs memoizes signature checks by issuer certificate fingerprint.
	sigs sync.Map // [32]byte -> error (nil stored as errOK)
}

var crlGeneration atomic.Uint64

// ParseCRL parses a DER or PEM ("X509 CRL") certificate revocation list.
func ParseCRL(data []byte) (*CRL, error) {
	c, err := parseCRL(data)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return c, nil
}

func parseCRL(data []byte) (*CRL, error) {
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("CRL: PEM block is %q, want X509 CRL", block.Type)
		}
		data = block.Bytes
	}
	l, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("CRL: %v", err)
	}
	c := &CRL{list: l, raw: bytes.Clone(data), revoked: make(map[string]time.Time, len(l.RevokedCertificateEntries)), generation: crlGeneration.Add(1)}
	for _, e := range l.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			c.revoked[string(e.SerialNumber.Bytes())] = e.RevocationTime
		}
	}
	return c, nil
}

// MaxCRLsPerSet bounds the CRLs one PEM set may hold (ParseCRLs).
const MaxCRLsPerSet = 16

// CRLSetMediaType is the media type under which a CA answers its CRL
// endpoint with one PEM "X509 CRL" block per issuing CA it holds (a CA in
// rotation has several intermediates whose certificates are all still
// valid). CRLFetcher asks for it first; a CA that does not know it answers
// its one DER CRL, which ParseCRLs reads too.
const CRLSetMediaType = "application/x-pem-file"

// ParseCRLs parses a DER CRL, or one or more PEM "X509 CRL" blocks (at most
// MaxCRLsPerSet), into the CRLs they hold, in order. No two may have the
// same issuer and key (the same RawIssuer and authority key identifier).
func ParseCRLs(data []byte) ([]*CRL, error) {
	l, err := parseCRLs(data)
	if err != nil {
		return nil, errorf("%w", err)
	}
	return l, nil
}

func parseCRLs(data []byte) ([]*CRL, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		c, err := parseCRL(data)
		if err != nil {
			return nil, err
		}
		return []*CRL{c}, nil
	}
	var out []*CRL
	for ; block != nil; block, rest = pem.Decode(rest) {
		if len(out) == MaxCRLsPerSet {
			return nil, fmt.Errorf("CRL set: more than %d CRLs", MaxCRLsPerSet)
		}
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("CRL: PEM block is %q, want X509 CRL", block.Type)
		}
		c, err := parseCRL(block.Bytes)
		if err != nil {
			return nil, err
		}
		for _, o := range out {
			if o.sameIssuer(c) {
				return nil, fmt.Errorf("CRL set: two CRLs of issuer %s", c.issuerName())
			}
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("CRL set: trailing bytes after the last PEM block")
	}
	return out, nil
}

// issuerName is the CRL issuer's common name, quoted and bounded, for
// messages.
func (c *CRL) issuerName() string {
	cn := c.list.Issuer.CommonName
	if len(cn) > 64 {
		cn = cn[:64] + "..."
	}
	return fmt.Sprintf("%q", cn)
}

// sameIssuer reports whether c and o are lists of the same issuer name and
// key.
func (c *CRL) sameIssuer(o *CRL) bool {
	return bytes.Equal(c.list.RawIssuer, o.list.RawIssuer) && bytes.Equal(c.list.AuthorityKeyId, o.list.AuthorityKeyId)
}

// RevocationList returns the parsed list; it must not be modified.
func (c *CRL) RevocationList() *x509.RevocationList { return c.list }

// Raw returns the DER bytes.
func (c *CRL) Raw() []byte { return c.raw }

// ThisUpdate returns the CRL's thisUpdate.
func (c *CRL) ThisUpdate() time.Time { return c.list.ThisUpdate }

// NextUpdate returns the CRL's nextUpdate (zero when absent).
func (c *CRL) NextUpdate() time.Time { return c.list.NextUpdate }

// Number returns the CRL number, or nil when absent.
func (c *CRL) Number() *big.Int { return c.list.Number }

// Generation returns the CRL's generation number.
func (c *CRL) Generation() uint64 { return c.generation }

// Len returns the number of revoked serials.
func (c *CRL) Len() int { return len(c.revoked) }

// Revoked reports whether serial is listed, and since when.
func (c *CRL) Revoked(serial *big.Int) (time.Time, bool) {
	if serial == nil || serial.Sign() < 0 {
		return time.Time{}, false
	}
	t, ok := c.revoked[string(serial.Bytes())]
	return t, ok
}

// Covers reports whether the CRL's issuer name is the issuer name of cert.
func (c *CRL) Covers(cert *x509.Certificate) bool {
	return bytes.Equal(c.list.RawIssuer, cert.RawIssuer)
}

// Stale reports whether the CRL is past its nextUpdate plus grace at now. A
// CRL without nextUpdate is stale grace after its thisUpdate.
func (c *CRL) Stale(now time.Time, grace time.Duration) bool {
	due := c.list.NextUpdate
	if due.IsZero() {
		due = c.list.ThisUpdate
	}
	return now.After(due.Add(grace))
}

var errOK = errors.New("ok")

// CheckSignatureFrom checks the CRL's signature against issuer, remembering
// the answer.
func (c *CRL) CheckSignatureFrom(issuer *x509.Certificate) error {
	if err := c.checkSignatureFrom(issuer); err != nil {
		return errorf("%w", err)
	}
	return nil
}

func (c *CRL) checkSignatureFrom(issuer *x509.Certificate) error {
	key := sha256.Sum256(issuer.Raw)
	if v, ok := c.sigs.Load(key); ok {
		if v.(error) == errOK {
			return nil
		}
		return v.(error)
	}
	var err error
	if e := c.list.CheckSignatureFrom(issuer); e != nil {
		err = fmt.Errorf("CRL signature does not verify with issuer %s: %v", certname.Of(issuer), e)
	}
	if err == nil {
		c.sigs.Store(key, errOK)
	} else {
		c.sigs.Store(key, err)
	}
	return err
}

// CRLSource supplies the current CRL. CRL is called on every verification,
// so it must be cheap, and it must return the same *CRL until the CRL
// changes. It returns an error when no CRL was ever loaded.
type CRLSource interface {
	CRL() (*CRL, error)
}

// CRLSetSource is a CRLSource that may hold several CRLs, one per issuing
// CA (CRLFetcher of a CA in rotation). The Verifier checks a chain against
// each of them; CRL returns the first.
type CRLSetSource interface {
	CRLSource
	CRLs() ([]*CRL, error)
}

// StaticCRL is a CRLSource holding one CRL that can be swapped with Set.
type StaticCRL struct {
	p atomic.Pointer[CRL]
}

// NewStaticCRL returns a source holding c (nil: CRL fails until Set).
func NewStaticCRL(c *CRL) *StaticCRL {
	s := &StaticCRL{}
	if c != nil {
		s.p.Store(c)
	}
	return s
}

// CRL returns the current CRL.
func (s *StaticCRL) CRL() (*CRL, error) {
	if c := s.p.Load(); c != nil {
		return c, nil
	}
	return nil, errorf("no CRL loaded")
}

// Set replaces the CRL.
func (s *StaticCRL) Set(c *CRL) { s.p.Store(c) }
