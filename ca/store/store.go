// Package store is mcpca's durable store for step-ca's authority: every
// database interface the authority uses (db.AuthDB, the certificate storers,
// the CRL database, GetCertificateData), on one bbolt file, with group
// commit.
//
// # Durability
//
// Every write (a used token, an issued certificate, a revocation, a CRL) goes
// to one writer goroutine. The writer takes every write that is waiting,
// applies them in arrival order in one bbolt transaction and commits it with
// one fsync (bbolt's commit: data pages, then the meta page, each synced);
// each caller returns only after that commit, so nothing is acknowledged
// before it is on disk. When writes arrive one at a time, each commits alone
// at once: batching never delays a caller, it only shares the fsync that
// concurrent writers would otherwise queue for. If a batch fails to commit,
// its writes are retried one transaction each, so one bad write cannot fail
// the others.
//
// ClaimToken is the one write that returns before its commit: the token is
// refused to every later caller at once (an in-memory claim, then the file),
// and its record rides with the next write somebody waits for (the
// certificate issued for it, or a Sync), held back at most 2ms. The CA uses
// it so that a token's fsync overlaps the signing, and holds every HTTP
// answer until the writes queued before it are durable (ca's durableWriter).
// Writes commit in queue order, so a waited write that succeeded is durable
// together with every claim queued before it; if a claim ever fails to
// commit, the store refuses every later write (Err) and must be reopened.
//
// # Semantics
//
// The same as step-ca's own bbolt driver (the conformance suite in
// storetest runs against both): a token is accepted by UseToken once and
// refused ever after, also across restarts; every stored certificate can be
// read back by its decimal serial; a serial is revoked once (the second
// Revoke fails with db.ErrAlreadyExists); read-only lookups of missing
// records fail with an error that database.IsErrNotFound recognises.
//
// One difference: used-token records are not kept forever. UseToken reads
// the token's own expiry (the JWT "exp" claim) and the record is pruned
// TokenGrace after it, when step-ca refuses the token as expired anyway (it
// allows one minute of clock skew; the grace is five minutes). Tokens
// without a readable expiry are kept forever. Pruning runs inside the
// write transactions that happen anyway, a bounded number of records each,
// so it costs no extra fsync and keeps pace with issuance. Certificates are
// kept forever unless WithCertificateRetention is given.
//
// # Size of the file
//
// bbolt never shrinks its file: pages freed by pruning go to a free list and
// are reused by later writes. Used tokens therefore take a bounded share of
// the file under constant issuance (issuance rate times token lifetime plus
// TokenGrace); certificates, kept forever by default as step-ca keeps them,
// add about 1 KiB each, and with WithCertificateRetention the whole file
// reaches a steady size and stays there. Stats reports the file's size and
// its live part. To give the space back to the file system, stop the
// CA and run Compact, which copies the live records into a new file.
//
// The CA keeps the file at db/mcpca.db beside step-ca's db/ca.db (used only
// with ca.WithStepCADatabase); nothing is migrated from a step-ca bbolt
// file, so switching a CA with history from one to the other loses its used
// tokens and certificates. bbolt maps 256 MiB of address space at open and
// grows the file (sparse) in 16 MiB steps.
//
// # PostgreSQL
//
// OpenPostgres opens the same store on a PostgreSQL database that several
// CA replicas share: a table per bucket, the same logic (written once
// against a kv transaction, kv.go), the same group commit (one pipelined
// SERIALIZABLE transaction per group, durable at COMMIT before any
// answer). A used token is INSERT ... ON CONFLICT DO NOTHING: one winner
// across replicas. A serial is stored once (an INSERT, on bbolt a check).
// A CRL is stored only above the stored number (CRLNumberError otherwise),
// so the number never goes back. Nothing is cached between transactions.
// The schema is versioned (mcpca_schema_version) and migrated at open
// under an advisory lock, so replicas starting at once make one schema.
// See postgres.go.
//
// # Conformance
//
// storetest.Run is the conformance suite of the interfaces step-ca's
// authority uses; it runs against bbolt, step-ca's own driver and
// PostgreSQL.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/smallstep/certificates/db"

	"github.com/mcpca/mcpca/clock"
)

// TokenGrace is how long a used-token record outlives the token's expiry.
// step-ca accepts a token up to one minute after its "exp".
const TokenGrace = 5 * time.Minute

// DefaultOpenTimeout bounds the wait for the file lock in Open.
const DefaultOpenTimeout = time.Second

// initialMmapSize is the address space bbolt maps at open.
const initialMmapSize = 256 << 20

// maxBatch bounds the writes committed in one transaction.
const maxBatch = 1024

// pruneBatch bounds the records one commit prunes beyond its own writes.
const pruneBatch = 256

// Bucket names and the format version of the file.
var (
	bucketMeta        = []byte("meta")
	bucketTokens      = []byte("tokens")       // token id -> 8-byte prune time (0: never)
	bucketTokenExpiry = []byte("token_expiry") // prune time || token id -> empty
	bucketCerts       = []byte("certs")        // decimal serial -> DER
	bucketCertData    = []byte("cert_data")    // decimal serial -> JSON db.CertificateData
	bucketCertExpiry  = []byte("cert_expiry")  // prune time || serial -> empty
	bucketRevoked     = []byte("revoked")      // decimal serial -> JSON db.RevokedCertificateInfo
	bucketCRL         = []byte("crl")          // "crl" -> JSON db.CertificateRevocationListInfo
	bucketSSHCerts    = []byte("ssh_certs")
	bucketSSHHosts    = []byte("ssh_hosts")
	bucketSSHPrincs   = []byte("ssh_host_principals")
	bucketSSHUsers    = []byte("ssh_users")
	bucketSSHRevoked  = []byte("ssh_revoked")
	// Lineage and identities (see lineage.go); created in older files at open.
	bucketLineage         = []byte("lineage")          // decimal serial -> JSON lineage
	bucketIdentities      = []byte("identities")       // SPIFFE ID || 0 || serial -> empty
	bucketIdentityRevoked = []byte("identity_revoked") // SPIFFE ID -> JSON IdentityRevocation
	// API keys (see apikeys.go); created in older files at open.
	bucketAPIKeys = []byte("apikeys") // name -> JSON APIKey
	// The configuration shared by CA replicas (see config.go).
	bucketConfig = []byte("config") // "version" -> 8 bytes; "files" -> JSON SharedConfig

	// buckets1 are the buckets of the first schema (PostgreSQL: version 1).
	buckets1 = [][]byte{bucketMeta, bucketTokens, bucketTokenExpiry, bucketCerts, bucketCertData,
		bucketCertExpiry, bucketRevoked, bucketCRL, bucketSSHCerts, bucketSSHHosts, bucketSSHPrincs,
		bucketSSHUsers, bucketSSHRevoked, bucketLineage, bucketIdentities, bucketIdentityRevoked, bucketAPIKeys}
	allBuckets = append(append([][]byte(nil), buckets1...), bucketConfig)

	keyFormat = []byte("format")
	keyCRL    = []byte("crl")
)

// formatVersion is written to the meta bucket of a new file; Open refuses
// any other.
const formatVersion = "mcpca-store-1"

// ErrClosed is returned by every method after Shutdown.
var ErrClosed = errors.New("store: closed")

func errorf(format string, args ...any) error { return fmt.Errorf("store: "+format, args...) }

// brokenError is the error of every write after a claimed token's record
// failed to commit.
type brokenError struct{ msg string }

func (e *brokenError) Error() string { return e.msg }

// failf says what failed, passing ErrClosed through as it is.
func failf(err error, format string, args ...any) error {
	var be *brokenError
	if errors.Is(err, ErrClosed) || errors.As(err, &be) {
		return err
	}
	return errorf(format+": %w", append(args, err)...)
}

// Store is the durable store. Its methods are safe for concurrent use.
type Store struct {
	path string
	bolt *bolt.DB   // nil on PostgreSQL
	pg   *pgBackend // nil on bbolt
	cfg  config

	mu     sync.RWMutex // held shared while sending to ops; exclusively by Shutdown
	closed bool
	ops    chan *op
	done   chan struct{}

	commits  atomic.Int64          // transactions committed by the writer
	writes   atomic.Int64          // writes in them
	inflight atomic.Int64          // ops queued and not yet done
	broken   atomic.Pointer[error] // set when a write nobody waited for failed

	tokMu   sync.Mutex
	pending map[string]struct{} // claimed token ids not yet committed

	crl atomic.Pointer[db.CertificateRevocationListInfo]

	apiKeysGen atomic.Uint64 // counts API key writes, for the CA's cached key set
}

// Open opens (or creates, with its directory) the store at path. It fails
// after the open timeout when another process holds the file.
func Open(path string, opts ...Option) (*Store, error) {
	cfg := config{clock: clock.Real{}, timeout: DefaultOpenTimeout}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := os.MkdirAll(dirOf(path), 0o700); err != nil {
		return nil, errorf("creating the directory of %s: %w", path, err)
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: cfg.timeout,
		// The free list is rebuilt from the file on open instead of being
		// written at every commit: fewer pages per fsync.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// Map 256 MiB of address space from the start: bbolt then grows
		// the file in 16 MiB steps instead of remapping (which waits for
		// every reader) and fsyncing at each doubling.
		InitialMmapSize: initialMmapSize,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, errorf("opening %s: the file is locked by another process (waited %v)", path, cfg.timeout)
		}
		return nil, errorf("opening %s: %w", path, err)
	}
	if err := bdb.Update(initFile); err != nil {
		_ = bdb.Close()
		return nil, errorf("%s: %w", path, err)
	}
	s := &Store{path: path, bolt: bdb, cfg: cfg, ops: make(chan *op, maxBatch), done: make(chan struct{}), pending: map[string]struct{}{}}
	go s.writer()
	return s, nil
}

func initFile(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("creating bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	switch v := meta.Get(keyFormat); {
	case v == nil:
		return meta.Put(keyFormat, []byte(formatVersion))
	case string(v) != formatVersion:
		return fmt.Errorf("unknown store format %q (this mcpca reads %q)", v, formatVersion)
	}
	return nil
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if os.IsPathSeparator(path[i]) {
			if i == 0 {
				return path[:1]
			}
			return path[:i]
		}
	}
	return "."
}

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.path }

// Shutdown waits for the writes in flight, then closes the file. Later
// calls return nil; every other method returns ErrClosed.
func (s *Store) Shutdown() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.ops)
	s.mu.Unlock()
	<-s.done
	if s.pg != nil {
		s.pg.close()
		return nil
	}
	if err := s.bolt.Close(); err != nil {
		return errorf("closing %s: %w", s.path, err)
	}
	return nil
}

// view runs a read-only transaction (on PostgreSQL: reads outside any
// transaction, one round trip each).
func (s *Store) view(fn func(tx kv) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if s.pg != nil {
		return s.pg.view(fn)
	}
	return s.bolt.View(func(tx *bolt.Tx) error { return fn(boltKV{tx}) })
}

// Stats describes the contents and size of the store.
type Stats struct {
	Tokens       int   // used-token records
	Certificates int   // stored X.509 certificates
	Revoked      int   // revoked X.509 serials
	FileBytes    int64 // size of the file's data (its high-water mark)
	LiveBytes    int64 // FileBytes less the free pages bbolt will reuse
	Commits      int64 // group commits (one fsync each) since Open
	Writes       int64 // writes in those commits: Writes/Commits is the batch size
}

// Stats counts the records and measures the file (on PostgreSQL: the
// tables' size on disk).
func (s *Store) Stats() (Stats, error) {
	if s.pg != nil {
		return s.pg.stats(s)
	}
	if s.isClosed() {
		return Stats{}, ErrClosed
	}
	var st Stats
	err := s.bolt.View(func(tx *bolt.Tx) error {
		st.Tokens = tx.Bucket(bucketTokens).Stats().KeyN
		st.Certificates = tx.Bucket(bucketCerts).Stats().KeyN
		st.Revoked = tx.Bucket(bucketRevoked).Stats().KeyN
		st.FileBytes = tx.Size()
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	bs := s.bolt.Stats()
	st.LiveBytes = st.FileBytes - int64(bs.FreePageN+bs.PendingPageN)*int64(s.bolt.Info().PageSize)
	st.Commits, st.Writes = s.commits.Load(), s.writes.Load()
	return st, nil
}

// Check verifies the consistency of the file's pages (bbolt's check: every
// page reachable once, free pages not in use) and of the store's indexes:
// every used-token record with an expiry has its index entry.
func (s *Store) Check() error {
	if s.pg != nil {
		return s.pg.check(s)
	}
	if s.isClosed() {
		return ErrClosed
	}
	return s.bolt.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // drained: the check reads the tx until it closes the channel
			if first == nil {
				first = errorf("%s is inconsistent: %w", s.path, err)
			}
		}
		if first != nil {
			return first
		}
		idx := tx.Bucket(bucketTokenExpiry)
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return errorf("%s: used token %s has a record of %d bytes", s.path, k, len(v))
			}
			if binary.BigEndian.Uint64(v) == 0 {
				return nil
			}
			if idx.Get(append(append([]byte(nil), v...), k...)) == nil {
				return errorf("%s: used token %s is missing from the expiry index", s.path, k)
			}
			return nil
		})
	})
}

// Compact copies the live records of the store file src into a new file dst
// (which must not exist), giving back the space of pruned records. Run it
// while the CA is stopped: it fails at once when src is in use. Replace src
// with dst afterwards.
func Compact(dst, src string) error {
	if _, err := os.Stat(dst); err == nil {
		return errorf("compacting into %s: the file exists", dst)
	}
	if _, err := os.Stat(src); err != nil {
		return errorf("compacting %s: %w", src, err)
	}
	in, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true, Timeout: DefaultOpenTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return errorf("compacting %s: the file is in use (stop the CA first)", src)
		}
		return errorf("compacting %s: %w", src, err)
	}
	defer in.Close()
	out, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: DefaultOpenTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return errorf("compacting into %s: %w", dst, err)
	}
	if err := bolt.Compact(out, in, 64<<20); err != nil {
		_ = out.Close()
		_ = os.Remove(dst)
		return errorf("compacting %s into %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return errorf("compacting into %s: %w", dst, err)
	}
	return nil
}
