package store

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"time"

	"github.com/smallstep/certificates/db"
)

// Lineage and identities
//
// Every certificate stored by this store (since the lineage buckets exist)
// has a lineage record: the SPIFFE ID in its URI SAN, the serial it was
// renewed from, the serials renewed from it and when it was first renewed.
// The store uses it three ways, each inside the one write transaction that
// needs it, so no concurrent renewal slips between a check and its write:
//   - Revoke also revokes every certificate renewed, directly or not, from
//     the revoked one (unless the reason is "superseded"): a renewal keeps
//     the key, and a rekey was authorized by the old key, so a compromise of
//     one is a compromise of its successors.
//   - StoreRenewedCertificate refuses (RenewalRefusedError) to record a
//     renewal of a certificate that is revoked by then, whose identity
//     was revoked after it was issued, or that was replaced.
//   - A certificate renewed a second time (the CA allows it within a short
//     grace, for a holder that lost the answer) keeps one chain only: the
//     earlier renewals, and everything renewed from them, are marked
//     replaced by the new one and renew no more. A copy of a certificate
//     therefore cannot start a chain of renewals beside the holder's.
//   - RevokeIdentity revokes every unexpired certificate of a SPIFFE ID at
//     once and records when, so that tokens minted before that moment can
//     be refused (IdentityRevocation).

// RenewalRefusedError is returned by StoreRenewedCertificate when the old
// certificate was revoked, or its identity revoked, before the renewal
// could be recorded. Nothing was stored.
type RenewalRefusedError struct {
	Serial string // the new certificate's, not stored
	Why    string // e.g. "certificate 123 was revoked"
}

func (e *RenewalRefusedError) Error() string {
	return "store: storing certificate " + e.Serial + ": renewal refused: " + e.Why
}

// lineage is the JSON record of bucketLineage.
type lineage struct {
	ID        string   `json:"id,omitempty"`         // the spiffe:// URI SAN
	Parent    string   `json:"parent,omitempty"`     // decimal serial it was renewed from
	Children  []string `json:"children,omitempty"`   // decimal serials renewed from it
	RenewedAt int64    `json:"renewed_at,omitempty"` // Unix seconds of its first renewal
	StoredAt  int64    `json:"stored_at,omitempty"`  // Unix nanoseconds when it was stored
	// ReplacedBy is set when the certificate this one was renewed from
	// renewed again (within the CA's grace): the later renewal, whose
	// serial it holds, is the one chain that goes on, and this certificate
	// (with whatever was renewed from it) renews no more.
	ReplacedBy string `json:"replaced_by,omitempty"`
}

// IdentityRevocation is the record of a revoked identity: every certificate
// of ID issued before At was revoked with the reason.
type IdentityRevocation struct {
	ID          string    `json:"id"`
	At          time.Time `json:"at"`
	Reason      string    `json:"reason,omitempty"`
	ReasonCode  int       `json:"reason_code,omitempty"`
	Provisioner string    `json:"provisioner,omitempty"`
}

// reasonSuperseded is RFC 5280's CRLReason superseded: the certificate was
// replaced, which says nothing against its successors.
const reasonSuperseded = 4

// spiffeID returns the first spiffe:// URI SAN of c, or "".
func spiffeID(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}

func getLineage(tx kv, serial []byte) (*lineage, error) {
	v, err := tx.get(bucketLineage, serial)
	if err != nil || v == nil {
		return nil, err
	}
	var l lineage
	if err := json.Unmarshal(v, &l); err != nil {
		return nil, errorf("lineage record of certificate %s is corrupted: %w", serial, err)
	}
	return &l, nil
}

func putLineage(tx kv, serial []byte, l *lineage) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return tx.put(bucketLineage, serial, b)
}

// identityKey is the key of a serial in the by-identity index.
func identityKey(id string, serial []byte) []byte {
	k := make([]byte, 0, len(id)+1+len(serial))
	k = append(k, id...)
	k = append(k, 0)
	return append(k, serial...)
}

// renewalRefusal says why leaf may not be recorded as renewed from parent
// ("" when it may): parent is revoked, or its identity was revoked at or
// after parent was issued.
func renewalRefusal(tx kv, leaf *x509.Certificate, parent []byte) (string, error) {
	if v, err := tx.get(bucketRevoked, parent); err != nil {
		return "", err
	} else if v != nil {
		return "certificate " + string(parent) + " was revoked", nil
	}
	if pl, err := getLineage(tx, parent); err != nil {
		return "", err
	} else if pl != nil && pl.ReplacedBy != "" {
		return "certificate " + string(parent) + " was replaced by " + pl.ReplacedBy + ", a later renewal of the certificate it was renewed from", nil
	}
	id := spiffeID(leaf)
	if id == "" {
		return "", nil
	}
	v, err := tx.get(bucketIdentityRevoked, []byte(id))
	if err != nil || v == nil {
		return "", err
	}
	var rec IdentityRevocation
	if err := json.Unmarshal(v, &rec); err != nil {
		return "", errorf("revocation record of identity %s is corrupted: %w", id, err)
	}
	// Issued after the revocation (enrolled again)? The stored time says;
	// NotBefore is backdated, so it serves only for older records.
	var issued time.Time
	if pl, err := getLineage(tx, parent); err != nil {
		return "", err
	} else if pl != nil && pl.StoredAt != 0 {
		issued = time.Unix(0, pl.StoredAt)
	} else if der, err := tx.get(bucketCerts, parent); err != nil {
		return "", err
	} else if der != nil {
		old, err := x509.ParseCertificate(der)
		if err != nil {
			return "", errorf("certificate %s is corrupted: %w", parent, err)
		}
		issued = old.NotBefore
	}
	if !issued.After(rec.At) {
		return "identity " + id + " was revoked at " + rec.At.UTC().Format(time.RFC3339), nil
	}
	return "", nil
}

// recordLineage writes the lineage of leaf (renewed from parent, when not
// nil) and indexes it by identity.
func recordLineage(tx kv, leaf *x509.Certificate, serial, parent []byte, now time.Time) error {
	l := &lineage{ID: spiffeID(leaf), StoredAt: now.UnixNano()}
	if parent != nil {
		pl, err := getLineage(tx, parent)
		if err != nil {
			return err
		}
		if pl == nil {
			pl = &lineage{ID: l.ID}
		}
		// Earlier renewals of parent, and their own renewals, are
		// replaced by this one: one chain goes on.
		for _, c := range pl.Children {
			if err := markReplaced(tx, []byte(c), string(serial)); err != nil {
				return err
			}
		}
		pl.Children = append(pl.Children, string(serial))
		if pl.RenewedAt == 0 {
			pl.RenewedAt = now.Unix()
		}
		if err := putLineage(tx, parent, pl); err != nil {
			return err
		}
		l.Parent = string(parent)
	}
	if err := putLineage(tx, serial, l); err != nil {
		return err
	}
	if l.ID != "" {
		return tx.put(bucketIdentities, identityKey(l.ID, serial), nil)
	}
	return nil
}

// markReplaced marks serial and its descendants replaced by by (those not
// marked yet).
func markReplaced(tx kv, serial []byte, by string) error {
	ds, err := descendants(tx, serial)
	if err != nil {
		return err
	}
	for _, d := range append([][]byte{serial}, ds...) {
		l, err := getLineage(tx, d)
		if err != nil {
			return err
		}
		if l == nil || l.ReplacedBy != "" {
			continue
		}
		l.ReplacedBy = by
		if err := putLineage(tx, d, l); err != nil {
			return err
		}
	}
	return nil
}

// dropLineage removes serial's lineage record and its index entry (when the
// certificate itself is pruned).
func dropLineage(tx kv, serial []byte) error {
	l, err := getLineage(tx, serial)
	if err != nil || l == nil {
		return err
	}
	if l.ID != "" {
		if err := tx.del(bucketIdentities, identityKey(l.ID, serial)); err != nil {
			return err
		}
	}
	return tx.del(bucketLineage, serial)
}

// descendants returns every serial renewed, directly or not, from serial.
func descendants(tx kv, serial []byte) ([][]byte, error) {
	var out [][]byte
	seen := map[string]bool{string(serial): true}
	queue := [][]byte{serial}
	for len(queue) > 0 {
		l, err := getLineage(tx, queue[0])
		queue = queue[1:]
		if err != nil {
			return nil, err
		}
		if l == nil {
			continue
		}
		for _, c := range l.Children {
			if seen[c] {
				continue
			}
			seen[c] = true
			out = append(out, []byte(c))
			queue = append(queue, []byte(c))
		}
	}
	return out, nil
}

// revokeCascade revokes every descendant of rci.Serial not revoked yet,
// with rci's time and reason, and returns their serials.
func revokeCascade(tx kv, rci *db.RevokedCertificateInfo) ([]string, error) {
	if rci.ReasonCode == reasonSuperseded {
		return nil, nil
	}
	ds, err := descendants(tx, []byte(rci.Serial))
	if err != nil {
		return nil, err
	}
	var revoked []string
	for _, d := range ds {
		if v, err := tx.get(bucketRevoked, d); err != nil {
			return nil, err
		} else if v != nil {
			continue
		}
		c := *rci
		c.Serial = string(d)
		c.Reason = "renewed from revoked certificate " + rci.Serial
		if rci.Reason != "" {
			c.Reason += ": " + rci.Reason
		}
		b, err := json.Marshal(&c)
		if err != nil {
			return nil, err
		}
		if err := tx.put(bucketRevoked, d, b); err != nil {
			return nil, err
		}
		revoked = append(revoked, c.Serial)
	}
	return revoked, nil
}

// Renewal is what the store knows of a certificate's renewals.
type Renewal struct {
	// RenewedAt is when it was first renewed (zero: never, or stored
	// before lineage records existed); Children the serials renewed from
	// it, oldest first.
	RenewedAt time.Time
	Children  []string
	// ReplacedBy is the serial of a later renewal of the certificate this
	// one was renewed from, which replaced it ("" when none did).
	ReplacedBy string
}

// Renewal reports the renewals of the certificate with the decimal serial.
func (s *Store) Renewal(serial string) (Renewal, error) {
	var r Renewal
	err := s.view(func(tx kv) error {
		l, err := getLineage(tx, []byte(serial))
		if err != nil || l == nil {
			return err
		}
		r.ReplacedBy = l.ReplacedBy
		if l.RenewedAt != 0 {
			r.RenewedAt, r.Children = time.Unix(l.RenewedAt, 0), append([]string(nil), l.Children...)
		}
		return nil
	})
	return r, err
}

// RevokeIdentity revokes, in one transaction, every certificate of the
// SPIFFE ID id that is not expired and not revoked yet, with the reason and
// code given, records the identity's revocation at rec.At, and returns the
// serials it revoked. Certificates issued for id after rec.At are not
// affected: enrolling again with a token minted after it is how an identity
// comes back.
func (s *Store) RevokeIdentity(rec IdentityRevocation) ([]string, error) {
	if rec.ID == "" {
		return nil, errorf("revoking an identity: no SPIFFE ID")
	}
	b, err := json.Marshal(&rec)
	if err != nil {
		return nil, errorf("encoding the revocation of %s: %w", rec.ID, err)
	}
	var revoked []string
	err = s.write(func(tx kv) error {
		revoked = nil // apply may run twice: assign, never accumulate
		if err := tx.put(bucketIdentityRevoked, []byte(rec.ID), b); err != nil {
			return err
		}
		prefix := identityKey(rec.ID, nil)
		var serials [][]byte
		if err := scanPrefix(tx, bucketIdentities, prefix, func(k, _ []byte) error {
			serials = append(serials, bytes.Clone(k[len(prefix):]))
			return nil
		}); err != nil {
			return err
		}
		for _, serial := range serials {
			if v, err := tx.get(bucketRevoked, serial); err != nil {
				return err
			} else if v != nil {
				continue
			}
			if der, err := tx.get(bucketCerts, serial); err != nil {
				return err
			} else if der != nil {
				if crt, err := x509.ParseCertificate(der); err == nil && crt.NotAfter.Before(rec.At) {
					continue // expired: nothing to revoke, and the CRL stays short
				}
			}
			v, err := json.Marshal(&db.RevokedCertificateInfo{
				Serial: string(serial), ReasonCode: rec.ReasonCode, Reason: "identity " + rec.ID + " revoked" + withReason(rec.Reason),
				RevokedAt: rec.At, ProvisionerID: rec.Provisioner,
			})
			if err != nil {
				return err
			}
			if err := tx.put(bucketRevoked, serial, v); err != nil {
				return err
			}
			revoked = append(revoked, string(serial))
		}
		return nil
	})
	if err != nil {
		return nil, failf(err, "revoking identity %s", rec.ID)
	}
	return revoked, nil
}

func withReason(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

// IdentityRevocation returns the record of the last revocation of the
// SPIFFE ID id, or nil when it was never revoked.
func (s *Store) IdentityRevocation(id string) (*IdentityRevocation, error) {
	var rec *IdentityRevocation
	err := s.view(func(tx kv) error {
		v, err := tx.get(bucketIdentityRevoked, []byte(id))
		if err != nil || v == nil {
			return err
		}
		rec = new(IdentityRevocation)
		return json.Unmarshal(v, rec)
	})
	if err != nil {
		if errors.Is(err, ErrClosed) || isUnavailable(err) {
			return nil, err
		}
		return nil, errorf("revocation record of identity %s is corrupted: %w", id, err)
	}
	return rec, nil
}

// IdentitySerials returns the decimal serials of the certificates of the
// SPIFFE ID id that the store holds (with lineage records).
func (s *Store) IdentitySerials(id string) ([]string, error) {
	var out []string
	err := s.view(func(tx kv) error {
		prefix := identityKey(id, nil)
		return scanPrefix(tx, bucketIdentities, prefix, func(k, _ []byte) error {
			out = append(out, string(k[len(prefix):]))
			return nil
		})
	})
	return out, err
}
