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
