package store

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/certificates/db"
	"github.com/smallstep/nosql/database"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/ssh"

	"github.com/mcpca/mcpca/internal/strictjson"
)

// The interfaces step-ca's authority finds by type assertion.
var (
	_ db.AuthDB                      = (*Store)(nil)
	_ db.CertificateStorer           = (*Store)(nil)
	_ db.CertificateRevocationListDB = (*Store)(nil)
	_ interface {
		StoreCertificateChain(provisioner.Interface, ...*x509.Certificate) error
		StoreRenewedCertificate(*x509.Certificate, ...*x509.Certificate) error
		GetCertificateData(string) (*db.CertificateData, error)
	} = (*Store)(nil)
)

// notFound wraps nosql's not-found sentinel, which the authority tests with
// database.IsErrNotFound.
func notFound(what string) error { return errorf("%s: %w", what, database.ErrNotFound) }

// UseToken records the token id as used and reports whether it was new:
// true the first time, false ever after (until the record is pruned,
// TokenGrace after the token expires). It returns once the record is
// durable.
func (s *Store) UseToken(id, tok string) (bool, error) {
	fresh, o, err := s.claim(id, tok, true)
	if err != nil || o == nil {
		return fresh, err
	}
	<-o.done
	if o.err != nil {
		return false, failf(o.err, "storing used token %s", id)
	}
	return fresh, nil
}

// ClaimToken is UseToken without the wait: the token is refused to every
// later caller at once, and its record is queued for the next commit. The
// caller must call Sync before it acknowledges anything that depends on the
// claim; a later write that waits (StoreCertificateChain, Revoke) is durable
// only after the claims queued before it, so it serves as that Sync. If the
// record cannot be committed, the store refuses every later write and Sync
// fails: restart the process.
func (s *Store) ClaimToken(id, tok string) (bool, error) {
	fresh, _, err := s.claim(id, tok, false)
	return fresh, err
}

// claim decides whether the token id is fresh (not committed, not claimed
// and waiting) and, if so, queues its record. o is nil when it is not fresh.
func (s *Store) claim(id, tok string, waited bool) (fresh bool, o *op, err error) {
	if len(id) == 0 || len(id) > bolt.MaxKeySize {
		return false, nil, errorf("storing used token: the token id has %d bytes (1 to %d)", len(id), bolt.MaxKeySize)
	}
	key := []byte(id)
	var pruneAt [8]byte
	exp, hasExp := tokenExpiry(tok)
	if hasExp {
		binary.BigEndian.PutUint64(pruneAt[:], uint64(max(exp.Add(TokenGrace).Unix(), 0)))
	}
	if s.pg != nil {
		// The database decides: INSERT ... ON CONFLICT DO NOTHING, one
		// winner across every replica.
		var expKey []byte
		if hasExp {
			expKey = expiryKey(exp.Add(TokenGrace), key)
		}
		var isNew bool
		o, err := s.enqueue(func(tx kv) error { return tx.(*pgTx).claimToken(key, pruneAt[:], expKey, &isNew) }, nil, true)
		if err != nil {
			return false, nil, failf(err, "storing used token %s", id)
		}
		<-o.done
		if o.err != nil {
			return false, nil, failf(o.err, "storing used token %s", id)
		}
		return isNew, nil, nil
	}
	s.tokMu.Lock()
	if _, ok := s.pending[id]; ok {
		s.tokMu.Unlock()
		return false, nil, nil
	}
	used, err := s.has(bucketTokens, id)
	if err != nil || used {
		s.tokMu.Unlock()
		return false, nil, err
	}
	// Claimed from here on; the lock is not held while queueing, since the
	// writer takes it to release committed claims.
	s.pending[id] = struct{}{}
	s.tokMu.Unlock()
	o, err = s.enqueue(func(tx kv) error {
		if err := tx.put(bucketTokens, key, pruneAt[:]); err != nil {
			return err
		}
		if !hasExp {
			return nil
		}
		return tx.put(bucketTokenExpiry, expiryKey(exp.Add(TokenGrace), key), nil)
	}, s.claimDone(id), waited)
	if err != nil {
		s.tokMu.Lock()
		delete(s.pending, id)
		s.tokMu.Unlock()
		return false, nil, failf(err, "storing used token %s", id)
	}
	return true, o, nil
}

// claimDone releases a committed claim. A claim that failed to commit
// stays (the token stays refused in this process) and breaks the store.
func (s *Store) claimDone(id string) func(error) {
	return func(err error) {
		if err != nil {
			var e error = &brokenError{fmt.Sprintf("store: the record of used token %s could not be committed (%v): restart the CA", id, err)}
			s.broken.CompareAndSwap(nil, &e)
			return
		}
		s.tokMu.Lock()
		delete(s.pending, id)
		s.tokMu.Unlock()
	}
}

// tokenExpiry reads the "exp" claim of a compact JWS without verifying it
// (the authority has verified the token before it calls UseToken). A token
// whose exp cannot be read strictly is kept forever.
func tokenExpiry(tok string) (time.Time, bool) {
	first := strings.IndexByte(tok, '.')
	if first < 0 {
		return time.Time{}, false
	}
	rest := tok[first+1:]
	second := strings.IndexByte(rest, '.')
	if second < 0 || strings.IndexByte(rest[second+1:], '.') >= 0 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(rest[:second])
	if err != nil {
		return time.Time{}, false
	}
	// Read as the CA read it before step-ca verified it (strictjson): a
	// case-variant "EXP" or a second "exp" cannot shorten the record's life.
	var claims struct {
		Exp *json.Number `json:"exp"`
	}
	if err := strictjson.Unmarshal(payload, &claims); err != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	f, err := claims.Exp.Float64()
	if err != nil || f <= 0 || f > 1<<40 {
		return time.Time{}, false
	}
	return time.Unix(int64(f)+1, 0), true // rounded up: never early
}

// StoreCertificate stores crt under its decimal serial.
func (s *Store) StoreCertificate(crt *x509.Certificate) error {
	return s.storeCerts(crt, nil, nil)
}

// StoreCertificateChain stores the leaf of chain and the provisioner that
// authorized it, in one transaction.
func (s *Store) StoreCertificateChain(p provisioner.Interface, chain ...*x509.Certificate) error {
	if len(chain) == 0 {
		return errorf("storing a certificate chain: the chain is empty")
	}
	data := &db.CertificateData{}
	if p != nil {
		data.Provisioner = &db.ProvisionerData{ID: p.GetID(), Name: p.GetName(), Type: p.GetType().String()}
		if ra, ok := p.(interface{ RAInfo() *provisioner.RAInfo }); ok {
			data.RaInfo = ra.RAInfo()
		}
	}
	b, err := json.Marshal(data)
	if err != nil {
		return errorf("encoding the provisioner of certificate %s: %w", chain[0].SerialNumber, err)
	}
	return s.storeCerts(chain[0], b, nil)
}

// StoreRenewedCertificate stores the leaf of chain with the provisioner
// record of oldCert (when there is one), in one transaction, and records it
// as renewed from oldCert. It refuses (RenewalRefusedError) when oldCert is
// revoked by then, or its identity was revoked after oldCert was issued: a
// revocation that raced the renewal wins.
func (s *Store) StoreRenewedCertificate(oldCert *x509.Certificate, chain ...*x509.Certificate) error {
	if len(chain) == 0 || oldCert == nil || oldCert.SerialNumber == nil {
		return errorf("storing a renewed certificate: missing the old certificate or the chain")
	}
	return s.storeCerts(chain[0], nil, []byte(oldCert.SerialNumber.String()))
}

// storeCerts stores leaf, with data as its provisioner record, or (a
// renewal) with a copy of the record of the serial parent.
func (s *Store) storeCerts(leaf *x509.Certificate, data, parent []byte) error {
	if leaf == nil || leaf.SerialNumber == nil {
		return errorf("storing a certificate: no certificate or no serial number")
	}
	serial := []byte(leaf.SerialNumber.String())
	var refused string
	err := s.write(func(tx kv) error {
		refused = "" // apply may run twice: assign, never accumulate
		if parent != nil {
			why, err := renewalRefusal(tx, leaf, parent)
			if err != nil || why != "" {
				refused = why
				return err
			}
		}
		// A serial is stored once: another certificate (from another
		// replica) under the same serial fails the write.
		if err := tx.insert(bucketCerts, serial, leaf.Raw); err != nil {
			return err
		}
		d := data
		if parent != nil {
			var err error
			if d, err = tx.get(bucketCertData, parent); err != nil {
				return err
			}
		}
		if d != nil {
			if err := tx.put(bucketCertData, serial, d); err != nil {
				return err
			}
		}
		if err := recordLineage(tx, leaf, serial, parent, s.cfg.clock.Now()); err != nil {
			return err
		}
		if s.cfg.retention > 0 && !leaf.NotAfter.IsZero() {
			return tx.put(bucketCertExpiry, expiryKey(leaf.NotAfter.Add(s.cfg.retention), serial), nil)
		}
		return nil
	})
	switch {
	case isDuplicate(err):
		return errorf("storing certificate %s: a certificate with this serial is already stored", serial)
	case err != nil:
		return failf(err, "storing certificate %s", serial)
	case refused != "":
		return &RenewalRefusedError{Serial: string(serial), Why: refused}
	}
	return nil
}

// GetCertificate returns the certificate with the decimal serial.
func (s *Store) GetCertificate(serial string) (*x509.Certificate, error) {
	var der []byte
	err := s.view(func(tx kv) error {
		v, err := tx.get(bucketCerts, []byte(serial))
		if v != nil {
			der = append([]byte(nil), v...)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if der == nil {
		return nil, notFound("certificate " + serial)
	}
	crt, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, errorf("certificate %s is corrupted: %w", serial, err)
	}
	return crt, nil
}

// GetCertificateData returns the provisioner record of a certificate.
func (s *Store) GetCertificateData(serial string) (*db.CertificateData, error) {
	var data *db.CertificateData
	err := s.view(func(tx kv) error {
		v, err := tx.get(bucketCertData, []byte(serial))
		if err != nil || v == nil {
			return err
		}
		data = new(db.CertificateData)
		return json.Unmarshal(v, data)
	})
	switch {
	case errors.Is(err, ErrClosed) || isUnavailable(err):
		return nil, err
	case err != nil:
		return nil, errorf("provisioner record of certificate %s is corrupted: %w", serial, err)
	case data == nil:
		return nil, notFound("provisioner record of certificate " + serial)
	}
	return data, nil
}

// IsRevoked reports whether the X.509 serial is revoked.
func (s *Store) IsRevoked(serial string) (bool, error) {
	return s.has(bucketRevoked, serial)
}

// IsSSHRevoked reports whether the SSH serial is revoked.
func (s *Store) IsSSHRevoked(serial string) (bool, error) {
	return s.has(bucketSSHRevoked, serial)
}

// IsSSHHost reports whether an SSH host certificate names the principal.
func (s *Store) IsSSHHost(principal string) (bool, error) {
	return s.has(bucketSSHHosts, strings.ToLower(principal))
}

func (s *Store) has(bucket []byte, key string) (bool, error) {
	var found bool
	err := s.view(func(tx kv) error {
		v, err := tx.get(bucket, []byte(key))
		found = v != nil
		return err
	})
	return found, err
}

// Revoke records the revocation of rci.Serial; it fails with
// db.ErrAlreadyExists when the serial is already revoked. In the same
// transaction it revokes every certificate renewed from rci.Serial,
// directly or not (see lineage.go), unless the reason code is superseded.
func (s *Store) Revoke(rci *db.RevokedCertificateInfo) error {
	return s.revoke(bucketRevoked, rci)
}

// RevokeSSH records the revocation of an SSH serial.
func (s *Store) RevokeSSH(rci *db.RevokedCertificateInfo) error {
	return s.revoke(bucketSSHRevoked, rci)
}

func (s *Store) revoke(bucket []byte, rci *db.RevokedCertificateInfo) error {
	if rci == nil || rci.Serial == "" {
		return errorf("revoking: no serial number")
	}
	b, err := json.Marshal(rci)
	if err != nil {
		return errorf("encoding the revocation of %s: %w", rci.Serial, err)
	}
	key := []byte(rci.Serial)
	var exists bool
	err = s.write(func(tx kv) error {
		v, err := tx.get(bucket, key)
		if exists = v != nil; exists || err != nil {
			return err
		}
		if err := tx.put(bucket, key, b); err != nil {
			return err
		}
		if bytes.Equal(bucket, bucketRevoked) {
			_, err := revokeCascade(tx, rci)
			return err
		}
		return nil
	})
	switch {
	case err != nil:
		return failf(err, "revoking %s", rci.Serial)
	case exists:
		return errorf("revoking %s: %w", rci.Serial, db.ErrAlreadyExists)
	}
	return nil
}

// GetRevokedCertificates returns every X.509 revocation record.
func (s *Store) GetRevokedCertificates() (*[]db.RevokedCertificateInfo, error) {
	var list []db.RevokedCertificateInfo
	err := s.view(func(tx kv) error {
		return tx.scan(bucketRevoked, nil, nil, -1, func(k, v []byte) error {
			var r db.RevokedCertificateInfo
			if err := json.Unmarshal(v, &r); err != nil {
				return errorf("revocation record of %s is corrupted: %w", k, err)
			}
			list = append(list, r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return &list, nil
}

// StoreCRL stores the current CRL.
func (s *Store) StoreCRL(info *db.CertificateRevocationListInfo) error {
	if info == nil {
		return errorf("storing the CRL: no CRL")
	}
	b, err := json.Marshal(info)
	if err != nil {
		return errorf("encoding the CRL: %w", err)
	}
	var stored int64
	var newer bool
	if err := s.write(func(tx kv) error {
		// The CRL number never goes back, also when several CA replicas
		// generate CRLs at once: a CRL whose number is not above the
		// stored one is refused (CRLNumberError) and regenerated.
		v, err := tx.get(bucketCRL, keyCRL)
		if err != nil {
			return err
		}
		stored, newer = 0, true
		if v != nil {
			var old db.CertificateRevocationListInfo
			if err := json.Unmarshal(v, &old); err == nil && old.Number >= info.Number {
				stored, newer = old.Number, false
				return nil
			}
		}
		return tx.put(bucketCRL, keyCRL, b)
	}); err != nil {
		return failf(err, "storing the CRL")
	}
	if !newer {
		return &CRLNumberError{Number: info.Number, Stored: stored}
	}
	if s.pg == nil {
		c := *info
		s.crl.Store(&c)
	}
	return nil
}

// GetCRL returns the current CRL, from memory after the first read.
func (s *Store) GetCRL() (*db.CertificateRevocationListInfo, error) {
	if c := s.crl.Load(); c != nil && s.pg == nil {
		if s.isClosed() {
			return nil, ErrClosed
		}
		return c, nil
	}
	var info *db.CertificateRevocationListInfo
	err := s.view(func(tx kv) error {
		v, err := tx.get(bucketCRL, keyCRL)
		if err != nil || v == nil {
			return err
		}
		info = new(db.CertificateRevocationListInfo)
		return json.Unmarshal(v, info)
	})
	switch {
	case errors.Is(err, ErrClosed) || isUnavailable(err):
		return nil, err
	case err != nil:
		return nil, errorf("the stored CRL is corrupted: %w", err)
	case info == nil:
		return nil, notFound("CRL")
	}
	if s.pg == nil {
		s.crl.CompareAndSwap(nil, info)
	}
	return info, nil
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// StoreSSHCertificate stores an SSH certificate and indexes its principals
// as hosts or users.
func (s *Store) StoreSSHCertificate(crt *ssh.Certificate) error {
	if crt == nil {
		return errorf("storing an SSH certificate: no certificate")
	}
	serial := []byte(strconv.FormatUint(crt.Serial, 10))
	raw := crt.Marshal()
	type principal struct{ name, data []byte }
	var hosts []principal
	var users [][]byte
	for _, p := range crt.ValidPrincipals {
		name := []byte(strings.ToLower(p))
		if crt.CertType == ssh.HostCert {
			d, err := json.Marshal(sshPrincipal{Serial: string(serial), Expiry: crt.ValidBefore})
			if err != nil {
				return errorf("encoding SSH principal %s: %w", p, err)
			}
			hosts = append(hosts, principal{name, d})
		} else {
			users = append(users, name)
		}
	}
	err := s.write(func(tx kv) error {
		if err := tx.put(bucketSSHCerts, serial, raw); err != nil {
			return err
		}
		for _, h := range hosts {
			if err := tx.put(bucketSSHHosts, h.name, serial); err != nil {
				return err
			}
			if err := tx.put(bucketSSHPrincs, h.name, h.data); err != nil {
				return err
			}
		}
		for _, u := range users {
			if err := tx.put(bucketSSHUsers, u, serial); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return failf(err, "storing SSH certificate %s", serial)
	}
	return nil
}

type sshPrincipal struct {
	Serial string
	Expiry uint64
}

// GetSSHHostPrincipals returns the host principals whose certificate has
// not expired.
func (s *Store) GetSSHHostPrincipals() ([]string, error) {
	now := s.cfg.clock.Now()
	var out []string
	err := s.view(func(tx kv) error {
		return tx.scan(bucketSSHPrincs, nil, nil, -1, func(k, v []byte) error {
			var p sshPrincipal
			if err := json.Unmarshal(v, &p); err != nil {
				return errorf("SSH principal %s is corrupted: %w", k, err)
			}
			if p.Expiry > 1<<62 || time.Unix(int64(p.Expiry), 0).After(now) {
				out = append(out, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
