package store

import (
	"encoding/json"
	"errors"
	"sort"
	"time"
)

// APIKey is the record of an API key: its hash, never the key.
type APIKey struct {
	Name        string            `json:"name"`
	Hash        string            `json:"hash"` // base64url SHA-256 of the key
	Roles       []string          `json:"roles,omitempty"`
	Attributes  map[string]string `json:"attrs,omitempty"`
	Audience    string            `json:"audience"`
	CreatedAt   time.Time         `json:"created_at"`
	ExpiresAt   time.Time         `json:"expires_at"`
	RevokedAt   time.Time         `json:"revoked_at,omitzero"`
	Provisioner string            `json:"provisioner,omitempty"` // who created it
}

// Active reports whether the key is in force at now: not revoked, not
// expired.
func (k *APIKey) Active(now time.Time) bool { return k.RevokedAt.IsZero() && now.Before(k.ExpiresAt) }

// ErrAPIKeyExists is CreateAPIKey's refusal of a name in use.
var ErrAPIKeyExists = errors.New("store: an API key of that name is in force")

// ErrAPIKeyNotFound is RevokeAPIKey's error for a name with no key in force.
var ErrAPIKeyNotFound = errors.New("store: no API key of that name is in force")

// CreateAPIKey records k. A name in force (not revoked, not expired at
// k.CreatedAt) is refused with ErrAPIKeyExists; a revoked or expired one is
// replaced.
func (s *Store) CreateAPIKey(k APIKey) error {
	v, err := json.Marshal(&k)
	if err != nil {
		return errorf("encoding API key %s: %w", k.Name, err)
	}
	err = s.write(func(tx kv) error {
		old, err := tx.get(bucketAPIKeys, []byte(k.Name))
		if err != nil {
			return err
		}
		if old != nil {
			var o APIKey
			if err := json.Unmarshal(old, &o); err == nil && o.Active(k.CreatedAt) {
				return ErrAPIKeyExists
			}
		}
		return tx.put(bucketAPIKeys, []byte(k.Name), v)
	})
	s.apiKeysGen.Add(1)
	if errors.Is(err, ErrAPIKeyExists) {
		return err
	}
	if err != nil {
		return failf(err, "recording API key %s", k.Name)
	}
	return nil
}

// RevokeAPIKey marks the key named name revoked at at and returns its
// record; ErrAPIKeyNotFound when no key of that name is in force.
func (s *Store) RevokeAPIKey(name string, at time.Time) (*APIKey, error) {
	var out *APIKey
	err := s.write(func(tx kv) error {
		out = nil
		old, err := tx.get(bucketAPIKeys, []byte(name))
		if err != nil {
			return err
		}
		if old == nil {
			return ErrAPIKeyNotFound
		}
		var k APIKey
		if err := json.Unmarshal(old, &k); err != nil {
			return err
		}
		if !k.Active(at) {
			return ErrAPIKeyNotFound
		}
		k.RevokedAt = at
		v, err := json.Marshal(&k)
		if err != nil {
			return err
		}
		out = &k
		return tx.put(bucketAPIKeys, []byte(name), v)
	})
	s.apiKeysGen.Add(1)
	if errors.Is(err, ErrAPIKeyNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, failf(err, "revoking API key %s", name)
	}
	return out, nil
}

// APIKeys returns every API key record (in force, revoked or expired),
// sorted by name.
func (s *Store) APIKeys() ([]APIKey, error) {
	var out []APIKey
	err := s.view(func(tx kv) error {
		return tx.scan(bucketAPIKeys, nil, nil, -1, func(k, v []byte) error {
			var rec APIKey
			if err := json.Unmarshal(v, &rec); err != nil {
				return errorf("API key record %q is corrupted: %w", k, err)
			}
			out = append(out, rec)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// APIKeysGeneration changes after every API key write: a cache of the
// keys built at one generation is current while it stays the same.
func (s *Store) APIKeysGeneration() uint64 { return s.apiKeysGen.Load() }
