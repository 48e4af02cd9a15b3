package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// SharedConfig is the configuration every CA replica applies: a version
// and the contents of the configuration files (by name, relative to the
// CA directory). On PostgreSQL, replicas poll ConfigVersion and apply a
// newer version without a restart; on bbolt there is one CA, and the
// record is only kept.
type SharedConfig struct {
	Version int64             `json:"version"`
	Files   map[string][]byte `json:"files"`
}

// ConfigConflictError is returned by PublishConfig when the shared
// configuration is no longer the version the caller started from: another
// replica published meanwhile.
type ConfigConflictError struct{ Base, Current int64 }

func (e *ConfigConflictError) Error() string {
	return fmt.Sprintf("store: publishing the configuration: it changed meanwhile (version %d, not %d): another replica published it", e.Current, e.Base)
}

var (
	keyConfigVersion = []byte("version")
	keyConfigFiles   = []byte("files")
)

func configVersion(tx kv) (int64, error) {
	v, err := tx.get(bucketConfig, keyConfigVersion)
	if err != nil || len(v) != 8 {
		return 0, err
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// ConfigVersion returns the version of the shared configuration (0: none
// published): one read.
func (s *Store) ConfigVersion() (int64, error) {
	var n int64
	err := s.view(func(tx kv) error {
		var err error
		n, err = configVersion(tx)
		return err
	})
	return n, err
}

// SharedConfig returns the shared configuration, or nil when none was
// published.
func (s *Store) SharedConfig() (*SharedConfig, error) {
	var c *SharedConfig
	err := s.view(func(tx kv) error {
		v, err := tx.get(bucketConfig, keyConfigFiles)
		if err != nil || v == nil {
			return err
		}
		c = new(SharedConfig)
		if err := json.Unmarshal(v, c); err != nil {
			return errorf("the shared configuration is corrupted: %w", err)
		}
		return nil
	})
	return c, err
}

// PublishConfig stores files as the shared configuration, version base+1,
// if the current version is base (ConfigConflictError otherwise), in one
// transaction, and returns the new version.
func (s *Store) PublishConfig(base int64, files map[string][]byte) (int64, error) {
	var cur int64
	err := s.write(func(tx kv) error {
		var err error
		if cur, err = configVersion(tx); err != nil || cur != base {
			return err
		}
		b, err := json.Marshal(&SharedConfig{Version: base + 1, Files: files})
		if err != nil {
			return err
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(base+1))
		if err := tx.put(bucketConfig, keyConfigFiles, b); err != nil {
			return err
		}
		return tx.put(bucketConfig, keyConfigVersion, v[:])
	})
	switch {
	case err != nil:
		return 0, failf(err, "publishing the configuration")
	case cur != base:
		return 0, &ConfigConflictError{Base: base, Current: cur}
	}
	return base + 1, nil
}
