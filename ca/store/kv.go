package store

import (
	"bytes"
	"errors"

	bolt "go.etcd.io/bbolt"
)

// kv is one transaction on the store's records, as the store's logic sees
// it: named buckets of keys and values, on bbolt or on PostgreSQL (a table
// per bucket). The semantics (tokens, certificates, revocations, lineage)
// are written once against it.
type kv interface {
	// get returns the value of key in bucket b, or nil when there is none.
	// The slice is valid until the transaction ends.
	get(b, key []byte) ([]byte, error)
	put(b, key, val []byte) error
	// insert is put of a key that must be new: it fails (errDuplicate on
	// bbolt, a unique violation on PostgreSQL, which fails the
	// transaction) when key is there.
	insert(b, key, val []byte) error
	del(b, key []byte) error
	// scan calls fn with the records of b whose key is in [lo, hi) (hi nil:
	// no upper bound), in key order, at most limit of them (negative: all).
	// The slices are valid during the call only.
	scan(b, lo, hi []byte, limit int, fn func(k, v []byte) error) error
}

// prefixEnd is the first key after every key with prefix p (nil: none).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// scanPrefix scans the records of b whose key starts with prefix.
func scanPrefix(tx kv, b, prefix []byte, fn func(k, v []byte) error) error {
	return tx.scan(b, prefix, prefixEnd(prefix), -1, fn)
}

// boltKV is a bbolt transaction.
type boltKV struct{ tx *bolt.Tx }

func (t boltKV) get(b, key []byte) ([]byte, error) { return t.tx.Bucket(b).Get(key), nil }
func (t boltKV) put(b, key, val []byte) error      { return t.tx.Bucket(b).Put(key, val) }
func (t boltKV) del(b, key []byte) error           { return t.tx.Bucket(b).Delete(key) }

func (t boltKV) insert(b, key, val []byte) error {
	if t.tx.Bucket(b).Get(key) != nil {
		return errDuplicate
	}
	return t.tx.Bucket(b).Put(key, val)
}

// errDuplicate is insert's error when the key exists.
var errDuplicate = errors.New("the key exists (duplicate key)")

func (t boltKV) scan(b, lo, hi []byte, limit int, fn func(k, v []byte) error) error {
	c := t.tx.Bucket(b).Cursor()
	n := 0
	for k, v := c.Seek(lo); k != nil && (hi == nil || bytes.Compare(k, hi) < 0) && (limit < 0 || n < limit); k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
		n++
	}
	return nil
}
