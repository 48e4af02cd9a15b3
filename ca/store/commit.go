package store

import (
	"bytes"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mcpca/mcpca/clock"
)

// claimHold bounds how long a token claim waits for a write to share its
// commit with.
const claimHold = 2 * time.Millisecond

// op is one write: apply runs inside the shared transaction and returns an
// error only when the transaction cannot go on (a refused Put); an outcome
// such as "token already used" is recorded by the closure itself. apply may
// run twice (see commit), so it must assign its outcome, never accumulate.
type op struct {
	waited bool              // somebody blocks on done: commit without holding back
	apply  func(tx kv) error // nil for a Sync barrier
	after  func(err error)   // run by the writer once the op is durable or failed
	err    error
	done   chan struct{}
}

// write queues fn for the next commit and waits until it is durable. Its
// error is bbolt's, unprefixed: callers say what failed.
func (s *Store) write(fn func(tx kv) error) error {
	o, err := s.enqueue(fn, nil, true)
	if err != nil {
		return err
	}
	<-o.done
	return o.err
}

// enqueue queues an op without waiting for it.
func (s *Store) enqueue(fn func(tx kv) error, after func(error), waited bool) (*op, error) {
	o := &op{apply: fn, after: after, waited: waited, done: make(chan struct{})}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := s.broken.Load(); err != nil {
		return nil, *err
	}
	s.inflight.Add(1)
	s.ops <- o
	return o, nil
}

// Err returns the error that broke the store (a claimed token's record
// that could not be committed), or nil. A write that returned without error
// is durable together with every claim queued before it when Err is nil.
func (s *Store) Err() error {
	if err := s.broken.Load(); err != nil {
		return *err
	}
	return nil
}

// Sync returns once every write queued before the call is durable (at once
// when none is in flight). It fails when a write queued without waiting
// (ClaimToken) could not be committed.
func (s *Store) Sync() error {
	if s.inflight.Load() == 0 {
		if s.isClosed() {
			return ErrClosed
		}
		if err := s.broken.Load(); err != nil {
			return *err
		}
		return nil
	}
	o, err := s.enqueue(nil, nil, true)
	if err != nil {
		return err
	}
	<-o.done
	if err := s.broken.Load(); err != nil {
		return *err
	}
	return o.err
}

// writer commits every waiting write in one transaction, until Shutdown
// closes ops. Token claims nobody waits for are held back until a write
// somebody waits for arrives (the request's certificate, a Sync before a
// refusal), up to claimHold: the claim then shares that write's commit
// instead of costing a commit of its own, and no answer waits longer.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*op, 0, maxBatch)
	var hold clock.Timer
	var holdC <-chan time.Time
	for {
		waited := false
		select {
		case o, ok := <-s.ops:
			if !ok {
				if len(batch) > 0 {
					s.commit(batch)
				}
				return
			}
			batch = append(batch, o)
			waited = o.waited
		case <-holdC:
			waited = true
		}
		closed := false
	fill:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-s.ops:
				if !ok {
					closed = true
					break fill
				}
				batch = append(batch, o)
				waited = waited || o.waited
			default:
				break fill
			}
		}
		if !waited && !closed && len(batch) < maxBatch {
			if holdC == nil {
				hold = s.cfg.clock.NewTimer(claimHold)
				holdC = hold.C()
			}
			continue
		}
		if hold != nil {
			hold.Stop()
			hold, holdC = nil, nil
		}
		s.commit(batch)
		clear(batch)
		batch = batch[:0]
		if closed {
			return
		}
	}
}

// commit applies batch in one transaction with one fsync, pruning expired
// records in the same transaction. If that transaction fails, each write is
// retried alone, so only the writes that fail by themselves report an error.
// A batch of Sync barriers only needs the batches before it: no commit.
func (s *Store) commit(batch []*op) {
	writes := 0
	for _, o := range batch {
		if o.apply != nil {
			writes++
		}
	}
	if s.pg != nil {
		s.pg.commit(s, batch, writes)
		return
	}
	var err error
	if writes > 0 {
		now := s.cfg.clock.Now()
		err = s.bolt.Update(func(btx *bolt.Tx) error {
			tx := boltKV{btx}
			for _, o := range batch {
				if o.apply != nil {
					if err := o.apply(tx); err != nil {
						return err
					}
				}
			}
			return s.prune(tx, now, pruneBatch+2*writes)
		})
		if err == nil {
			s.commits.Add(1)
			s.writes.Add(int64(writes))
		}
	}
	for _, o := range batch {
		switch {
		case err == nil || o.apply == nil:
		case writes > 1:
			o.err = s.bolt.Update(func(btx *bolt.Tx) error { return o.apply(boltKV{btx}) })
		default:
			o.err = err
		}
		if o.after != nil {
			o.after(o.err)
		}
		s.inflight.Add(-1)
		close(o.done)
	}
}

// Prune removes, in one durable transaction, every used-token record (and,
// with WithCertificateRetention, every certificate) whose time has come.
// Commits prune a bounded number of records as they go; Prune catches up at
// once.
func (s *Store) Prune() error {
	if err := s.write(func(tx kv) error { return s.prune(tx, s.cfg.clock.Now(), -1) }); err != nil {
		return failf(err, "pruning")
	}
	return nil
}

// prune deletes up to limit (all if negative) expired records of each
// expiry index.
func (s *Store) prune(tx kv, now time.Time, limit int) error {
	if err := pruneIndex(tx, bucketTokenExpiry, now, limit, nil, bucketTokens); err != nil {
		return err
	}
	if s.cfg.retention > 0 {
		return pruneIndex(tx, bucketCertExpiry, now, limit, dropLineage, bucketCerts, bucketCertData, bucketRevoked)
	}
	return nil
}

// pruneIndex walks the expiry index (keys: 8-byte big-endian Unix time,
// then the record key) from the oldest and deletes the records due by now
// from the index and from each of the record buckets, after calling drop
// (when not nil) with each record key.
func pruneIndex(tx kv, index []byte, now time.Time, limit int, drop func(kv, []byte) error, records ...[]byte) error {
	var due [][]byte
	// Keys below the next second's prefix: every record due by now.
	var bound [8]byte
	binary.BigEndian.PutUint64(bound[:], uint64(max(now.Unix(), 0))+1)
	if err := tx.scan(index, nil, bound[:], limit, func(k, _ []byte) error {
		if len(k) >= 8 {
			due = append(due, bytes.Clone(k))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range due {
		if drop != nil {
			if err := drop(tx, k[8:]); err != nil {
				return err
			}
		}
		for _, r := range records {
			if err := tx.del(r, k[8:]); err != nil {
				return err
			}
		}
		if err := tx.del(index, k); err != nil {
			return err
		}
	}
	return nil
}

// expiryKey is the index key of a record pruned at t.
func expiryKey(t time.Time, key []byte) []byte {
	k := make([]byte, 8+len(key))
	binary.BigEndian.PutUint64(k, uint64(max(t.Unix(), 0)))
	copy(k[8:], key)
	return k
}
