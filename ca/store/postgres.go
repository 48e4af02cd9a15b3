package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpca/mcpca/clock"
)

// PostgreSQL
//
// OpenPostgres opens the store on a PostgreSQL database shared by several
// CA replicas. Every bucket of the bbolt file is a table there,
// mcpca_<bucket> (k bytea PRIMARY KEY, v bytea), and the store's logic
// (tokens, certificates, revocations, lineage) is the same code on both: it
// runs on a kv transaction.
//
// Writes go through the same group commit: the writer takes every waiting
// write and runs them in one SERIALIZABLE transaction, one COMMIT (one WAL
// flush, synchronous_commit on), and answers each caller after it. The
// statements are pipelined: BEGIN, the writes and COMMIT travel in one
// round trip, and only a write that must read first (a renewal's lineage, a
// revocation's existing record) costs one more round trip for its reads.
// A used token is one statement, INSERT ... ON CONFLICT DO NOTHING: the
// replica whose insert wins redeems it, every other replica sees the row.
// A serialization failure (two replicas touching the same records at once)
// retries the group; any other failure retries each write alone, as on
// bbolt. ClaimToken waits for the commit on PostgreSQL: whether a token is
// fresh is the database's answer, not this process's.
//
// Nothing is cached across transactions: the CRL, revocations, lineage
// and identity revocations are read from the database, so what one replica
// commits, every replica sees at once.

// schemaLockID is the pg_advisory_xact_lock key that serialises migrations
// of replicas starting at once ("mcpca" in ASCII).
const schemaLockID = 0x6d63706361

// pgPruneEvery is how often a commit also prunes expired records.
const pgPruneEvery = 30 * time.Second

// pgRetries bounds the retries of a group after serialization failures.
const pgRetries = 20

// SchemaVersion is the version of the PostgreSQL schema this mcpca writes.
var SchemaVersion = len(migrations)

// migrations are applied in order; migrations[i] brings the schema to
// version i+1. Each is idempotent (IF NOT EXISTS).
var migrations = []string{
	createTables(buckets1...),
	createTables(bucketConfig),
	createTables(bucketAPIKeys), // in buckets1 now; for databases made at version 2
}

func createTables(buckets ...[]byte) string {
	var b strings.Builder
	for _, name := range buckets {
		fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (k bytea PRIMARY KEY, v bytea NOT NULL);\n", table(name))
	}
	return b.String()
}

// table is the table of a bucket.
func table(b []byte) string { return "mcpca_" + string(b) }

// UnavailableError is the error of an operation that could not reach the
// database (connection refused, dropped, timed out). The write was not
// acknowledged; it may be retried once the database is back.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string {
	return "store: the database is unreachable: " + e.Err.Error()
}

func (e *UnavailableError) Unwrap() error { return e.Err }

func isUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}

// CRLNumberError is returned by StoreCRL when the stored CRL's number is
// not below the new one's: another replica stored a CRL meanwhile. Nothing
// was stored; regenerate the CRL.
type CRLNumberError struct{ Number, Stored int64 }

func (e *CRLNumberError) Error() string {
	return fmt.Sprintf("store: storing the CRL: its number %d is not above the stored CRL's %d (another CA replica stored one meanwhile): regenerate it", e.Number, e.Stored)
}

type pgBackend struct {
	pool       *pgxpool.Pool
	roundTrips atomic.Int64 // round trips to the database
	lastPrune  time.Time    // writer goroutine only
	down       atomic.Pointer[error]
}

// OpenPostgres opens the store on the PostgreSQL database of the
// connection string dsn (a postgres:// URL or key=value pairs), creating or
// migrating its schema (Migrate). It fails when the database is
// unreachable; afterwards, an unreachable database fails the operations
// (UnavailableError) and the store recovers by itself once it is back.
func OpenPostgres(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	cfg := config{clock: clock.Real{}, timeout: DefaultOpenTimeout}
	for _, o := range opts {
		o.apply(&cfg)
	}
	pool, err := newPool(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	b := &pgBackend{pool: pool, lastPrune: cfg.clock.Now()}
	s := &Store{path: redactDSN(dsn), pg: b, cfg: cfg, ops: make(chan *op, maxBatch), done: make(chan struct{}), pending: map[string]struct{}{}}
	go s.writer()
	return s, nil
}

func newPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errorf("the PostgreSQL connection string is not valid: %v", redactErr(err, dsn))
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pc.MaxConns = max(pc.MaxConns, 8)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, errorf("connecting to PostgreSQL: %v", redactErr(err, dsn))
	}
	return pool, nil
}

// redactDSN names the database of dsn without its password.
func redactDSN(dsn string) string {
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "postgresql"
	}
	host := pc.Host
	if pc.Port != 0 && !strings.HasPrefix(host, "/") {
		host = net.JoinHostPort(host, fmt.Sprint(pc.Port))
	}
	return fmt.Sprintf("postgresql://%s@%s/%s", pc.User, host, pc.Database)
}

// redactErr keeps the password of dsn out of an error message.
func redactErr(err error, dsn string) string {
	msg := err.Error()
	if pc, perr := pgconn.ParseConfig(dsn); perr == nil && pc.Password != "" {
		msg = strings.ReplaceAll(msg, pc.Password, "xxxxx")
	}
	return msg
}

// Migrate creates or migrates the store's schema in the PostgreSQL
// database of dsn and returns the schema version before and after. Replicas
// that start at once migrate one after the other (an advisory lock held by
// the migrating transaction); a migration already applied is not applied
// again. It refuses a schema newer than this mcpca's.
func Migrate(ctx context.Context, dsn string) (before, after int, err error) {
	pool, err := newPool(ctx, dsn)
	if err != nil {
		return 0, 0, err
	}
	defer pool.Close()
	before, err = schemaVersion(ctx, pool)
	if err != nil {
		return 0, 0, err
	}
	if err := migrate(ctx, pool); err != nil {
		return 0, 0, err
	}
	return before, SchemaVersion, nil
}

// schemaVersion reads the schema version (0: no schema).
func schemaVersion(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var v *int
	err := pool.QueryRow(ctx, `SELECT CASE WHEN to_regclass('mcpca_schema_version') IS NULL THEN NULL ELSE 1 END`).Scan(&v)
	if err != nil {
		return 0, unavailable("reading the schema version", err)
	}
	if v == nil {
		return 0, nil
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM mcpca_schema_version`).Scan(&n); err != nil {
		return 0, unavailable("reading the schema version", err)
	}
	return n, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return unavailable("migrating the schema", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit: nothing to roll back
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLockID)); err != nil {
		return unavailable("locking the schema", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS mcpca_schema_version (version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return unavailable("creating the schema version table", err)
	}
	var cur int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM mcpca_schema_version`).Scan(&cur); err != nil {
		return unavailable("reading the schema version", err)
	}
	if cur > SchemaVersion {
		return errorf("the database's schema is version %d, newer than this mcpca's %d: upgrade mcpca", cur, SchemaVersion)
	}
	for v := cur; v < SchemaVersion; v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return unavailable(fmt.Sprintf("migrating the schema to version %d", v+1), err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO mcpca_schema_version (version) VALUES ($1)`, v+1); err != nil {
			return unavailable("recording the schema version", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return unavailable("migrating the schema", err)
	}
	return nil
}

// unavailable says what failed: an UnavailableError when the database
// could not be reached, else the error.
func unavailable(what string, err error) error {
	if isConnErr(err) {
		return &UnavailableError{Err: fmt.Errorf("%s: %w", what, err)}
	}
	return errorf("%s: %w", what, err)
}

// isConnErr reports whether err is the database's absence rather than its
// answer.
func isConnErr(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P: operator intervention
		// (shutdown, crash shutdown, cannot connect now).
		return strings.HasPrefix(pe.Code, "08") || strings.HasPrefix(pe.Code, "57P")
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	return errors.As(err, &ne) || errors.As(err, &ce) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "conn closed") ||
		strings.Contains(err.Error(), "closed pool") || strings.Contains(err.Error(), "unexpected EOF")
}

// isDuplicate reports whether err is insert's refusal of an existing key.
func isDuplicate(err error) bool {
	var pe *pgconn.PgError
	return errors.Is(err, errDuplicate) || (errors.As(err, &pe) && pe.Code == "23505")
}

func isSerialization(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

func (b *pgBackend) close() { b.pool.Close() }

// setDown records whether the database was reachable at the last contact.
func (b *pgBackend) setDown(err error) {
	if err == nil || !isConnErr(err) {
		if err == nil {
			b.down.Store(nil)
		}
		return
	}
	e := error(&UnavailableError{Err: err})
	b.down.Store(&e)
}

// Ping checks that the database answers, within ctx. On bbolt it reports
// only whether the store is open and not broken.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}
	if s.pg == nil {
		return s.Err()
	}
	s.pg.roundTrips.Add(1)
	err := s.pg.pool.Ping(ctx)
	s.pg.setDown(err)
	if err != nil {
		return &UnavailableError{Err: err}
	}
	return nil
}

// Unavailable returns the error of the last contact with the database
// when it could not be reached (nil on bbolt, and once the database
// answers again).
func (s *Store) Unavailable() error {
	if s.pg == nil {
		return nil
	}
	if e := s.pg.down.Load(); e != nil {
		return *e
	}
	return nil
}

// Backend names the store's backend: "bbolt" or "postgresql".
func (s *Store) Backend() string {
	if s.pg != nil {
		return "postgresql"
	}
	return "bbolt"
}

// Counters returns the group commits and the writes in them since the
// store was opened, and (PostgreSQL) the round trips to the database.
func (s *Store) Counters() (commits, writes, roundTrips int64) {
	return s.commits.Load(), s.writes.Load(), s.RoundTrips()
}

// RoundTrips returns the number of round trips to PostgreSQL since
// OpenPostgres (0 on bbolt): with Stats' Commits, what an issuance costs.
func (s *Store) RoundTrips() int64 {
	if s.pg == nil {
		return 0
	}
	return s.pg.roundTrips.Load()
}

// pgTx is a write transaction on PostgreSQL: its writes are queued
// (pipelined) and sent with the next read or with the COMMIT; an overlay
// makes them visible to the transaction's own reads.
type pgTx struct {
	ctx     context.Context
	conn    *pgx.Conn
	b       *backendBatch
	overlay map[string]map[string][]byte // table -> key -> value (nil: deleted)
	rt      *atomic.Int64
}

type backendBatch struct{ pgx.Batch }

func newPgTx(ctx context.Context, conn *pgx.Conn, rt *atomic.Int64) *pgTx {
	t := &pgTx{ctx: ctx, conn: conn, b: &backendBatch{}, overlay: map[string]map[string][]byte{}, rt: rt}
	t.b.Queue("BEGIN ISOLATION LEVEL SERIALIZABLE")
	return t
}

// flush sends the queued statements (one round trip).
func (t *pgTx) flush() error {
	if t.b.Len() == 0 {
		return nil
	}
	t.rt.Add(1)
	br := t.conn.SendBatch(t.ctx, &t.b.Batch)
	t.b = &backendBatch{}
	return br.Close()
}

func (t *pgTx) setOverlay(tbl string, key, val []byte) {
	m := t.overlay[tbl]
	if m == nil {
		m = map[string][]byte{}
		t.overlay[tbl] = m
	}
	m[string(key)] = val
}

func (t *pgTx) get(b, key []byte) ([]byte, error) {
	tbl := table(b)
	if v, ok := t.overlay[tbl][string(key)]; ok {
		return v, nil
	}
	var v []byte
	found := false
	t.b.Queue("SELECT v FROM "+tbl+" WHERE k = $1", key).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err := t.flush(); err != nil {
		return nil, err
	}
	if !found {
		return nil, nil
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

func (t *pgTx) put(b, key, val []byte) error {
	if val == nil {
		val = []byte{}
	}
	tbl := table(b)
	t.setOverlay(tbl, bytes.Clone(key), bytes.Clone(val))
	t.b.Queue("INSERT INTO "+tbl+" (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", key, val)
	return nil
}

func (t *pgTx) insert(b, key, val []byte) error {
	if val == nil {
		val = []byte{}
	}
	tbl := table(b)
	if v, ok := t.overlay[tbl][string(key)]; ok && v != nil {
		return errDuplicate
	}
	t.setOverlay(tbl, bytes.Clone(key), bytes.Clone(val))
	t.b.Queue("INSERT INTO "+tbl+" (k, v) VALUES ($1, $2)", key, val)
	return nil
}

func (t *pgTx) del(b, key []byte) error {
	tbl := table(b)
	t.setOverlay(tbl, bytes.Clone(key), nil)
	t.b.Queue("DELETE FROM "+tbl+" WHERE k = $1", key)
	return nil
}

func (t *pgTx) scan(b, lo, hi []byte, limit int, fn func(k, v []byte) error) error {
	tbl := table(b)
	ov := t.overlay[tbl]
	recs, err := scanQuery(t.ctx, t.conn, t.rt, tbl, lo, hi, limit, len(ov), t)
	if err != nil {
		return err
	}
	return mergeScan(recs, ov, lo, hi, limit, fn)
}

// claimToken queues the insert of a used token (and its expiry index
// entry, when it has an expiry); *fresh is set once the batch has run.
func (t *pgTx) claimToken(key, pruneAt, expKey []byte, fresh *bool) error {
	*fresh = false
	t.b.Queue(`WITH ins AS (INSERT INTO mcpca_tokens (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING RETURNING k),
  idx AS (INSERT INTO mcpca_token_expiry (k, v) SELECT $3::bytea, ''::bytea FROM ins WHERE $3::bytea IS NOT NULL ON CONFLICT (k) DO NOTHING)
SELECT count(*) FROM ins`, key, pruneAt, expKey).QueryRow(func(row pgx.Row) error {
		var n int
		if err := row.Scan(&n); err != nil {
			return err
		}
		*fresh = n == 1
		return nil
	})
	return nil
}

type record struct{ k, v []byte }

// scanQuery reads the records of tbl in [lo, hi), at most limit+extra when
// limit is not negative (extra: overlay entries that may hide some).
func scanQuery(ctx context.Context, conn *pgx.Conn, rt *atomic.Int64, tbl string, lo, hi []byte, limit, extra int, t *pgTx) ([]record, error) {
	q := "SELECT k, v FROM " + tbl + " WHERE k >= $1"
	args := []any{nonNil(lo)}
	if hi != nil {
		q += " AND k < $2"
		args = append(args, hi)
	}
	q += " ORDER BY k"
	if limit >= 0 {
		q += fmt.Sprintf(" LIMIT %d", limit+extra)
	}
	var recs []record
	collect := func(rows pgx.Rows) error {
		for rows.Next() {
			var r record
			if err := rows.Scan(&r.k, &r.v); err != nil {
				return err
			}
			recs = append(recs, r)
		}
		return rows.Err()
	}
	if t != nil {
		t.b.Queue(q, args...).Query(collect)
		if err := t.flush(); err != nil {
			return nil, err
		}
		return recs, nil
	}
	rt.Add(1)
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	return recs, collect(rows)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// mergeScan applies a transaction's overlay to the records read.
func mergeScan(recs []record, ov map[string][]byte, lo, hi []byte, limit int, fn func(k, v []byte) error) error {
	if len(ov) > 0 {
		m := make(map[string][]byte, len(recs)+len(ov))
		for _, r := range recs {
			m[string(r.k)] = r.v
		}
		for k, v := range ov {
			kb := []byte(k)
			if bytes.Compare(kb, lo) < 0 || (hi != nil && bytes.Compare(kb, hi) >= 0) {
				continue
			}
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		recs = recs[:0]
		for k, v := range m {
			recs = append(recs, record{[]byte(k), v})
		}
		sort.Slice(recs, func(i, j int) bool { return bytes.Compare(recs[i].k, recs[j].k) < 0 })
	}
	for i, r := range recs {
		if limit >= 0 && i >= limit {
			break
		}
		if err := fn(r.k, nonNil(r.v)); err != nil {
			return err
		}
	}
	return nil
}

// pgView reads outside any transaction, from the pool.
type pgView struct {
	ctx context.Context
	b   *pgBackend
}

func (v pgView) get(b, key []byte) ([]byte, error) {
	v.b.roundTrips.Add(1)
	var val []byte
	err := v.b.pool.QueryRow(v.ctx, "SELECT v FROM "+table(b)+" WHERE k = $1", key).Scan(&val)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		v.b.setDown(nil)
		return nil, nil
	case err != nil:
		v.b.setDown(err)
		return nil, unavailable("reading "+string(b), err)
	}
	v.b.setDown(nil)
	return nonNil(val), nil
}

func (v pgView) put([]byte, []byte, []byte) error { return errorf("write in a read-only view") }
func (v pgView) del([]byte, []byte) error         { return errorf("write in a read-only view") }
func (v pgView) insert([]byte, []byte, []byte) error {
	return errorf("write in a read-only view")
}

func (v pgView) scan(b, lo, hi []byte, limit int, fn func(k, val []byte) error) error {
	conn, err := v.b.pool.Acquire(v.ctx)
	if err != nil {
		v.b.setDown(err)
		return unavailable("reading "+string(b), err)
	}
	defer conn.Release()
	recs, err := scanQuery(v.ctx, conn.Conn(), &v.b.roundTrips, table(b), lo, hi, limit, 0, nil)
	v.b.setDown(err)
	if err != nil {
		return unavailable("reading "+string(b), err)
	}
	return mergeScan(recs, nil, lo, hi, limit, fn)
}

// pgReadTimeout bounds one read.
const pgReadTimeout = 10 * time.Second

func (b *pgBackend) view(fn func(kv) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), pgReadTimeout)
	defer cancel()
	return fn(pgView{ctx, b})
}

// pgWriteTimeout bounds one group's transaction.
const pgWriteTimeout = 15 * time.Second

// commit runs batch in one transaction (retrying it after serialization
// failures); when it fails otherwise, each write is retried alone, unless
// the database is unreachable: then every write of the group fails with
// UnavailableError, none acknowledged.
func (b *pgBackend) commit(s *Store, batch []*op, writes int) {
	var err error
	if writes > 0 {
		now := s.cfg.clock.Now()
		prune := now.Sub(b.lastPrune) >= pgPruneEvery
		err = b.run(func(tx kv) error {
			for _, o := range batch {
				if o.apply != nil {
					if err := o.apply(tx); err != nil {
						return err
					}
				}
			}
			if prune {
				return s.prune(tx, now, pruneBatch)
			}
			return nil
		})
		if err == nil {
			s.commits.Add(1)
			s.writes.Add(int64(writes))
			if prune {
				b.lastPrune = now
			}
		}
	}
	for _, o := range batch {
		switch {
		case err == nil || o.apply == nil:
		case writes > 1 && !isUnavailable(err):
			o.err = b.run(o.apply)
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

// run runs fn in a SERIALIZABLE transaction, again after serialization
// failures (fn must assign its outcomes, never accumulate them).
func (b *pgBackend) run(fn func(kv) error) error {
	var err error
	for range pgRetries {
		err = b.runOnce(fn)
		if !isSerialization(err) {
			break
		}
	}
	b.setDown(err)
	if err != nil && isConnErr(err) {
		return &UnavailableError{Err: err}
	}
	return err
}

func (b *pgBackend) runOnce(fn func(kv) error) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), pgWriteTimeout)
	defer cancel()
	pc, err := b.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer pc.Release()
	conn := pc.Conn()
	tx := newPgTx(ctx, conn, &b.roundTrips)
	defer func() {
		if err != nil && !conn.IsClosed() {
			b.roundTrips.Add(1)
			if _, rerr := conn.Exec(ctx, "ROLLBACK"); rerr != nil {
				// A connection in an unknown state is not given back.
				_ = conn.Close(ctx)
			}
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	tx.b.Queue("COMMIT")
	return tx.flush()
}

// stats counts the records and measures the tables.
func (b *pgBackend) stats(s *Store) (Stats, error) {
	if s.isClosed() {
		return Stats{}, ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgReadTimeout)
	defer cancel()
	var st Stats
	var size int64
	err := b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM mcpca_tokens), (SELECT count(*) FROM mcpca_certs),
  (SELECT count(*) FROM mcpca_revoked), (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relname LIKE 'mcpca\_%' AND c.relkind = 'r')`).
		Scan(&st.Tokens, &st.Certificates, &st.Revoked, &size)
	if err != nil {
		return Stats{}, unavailable("counting the records", err)
	}
	st.FileBytes, st.LiveBytes = size, size
	st.Commits, st.Writes = s.commits.Load(), s.writes.Load()
	return st, nil
}

// check verifies the schema version and the store's indexes: every used
// token with an expiry has its index entry.
func (b *pgBackend) check(s *Store) error {
	if s.isClosed() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := schemaVersion(ctx, b.pool)
	if err != nil {
		return err
	}
	if v != SchemaVersion {
		return errorf("%s: the schema is version %d, this mcpca's is %d: run mcpca store migrate", s.path, v, SchemaVersion)
	}
	var bad []byte
	err = b.pool.QueryRow(ctx, `SELECT t.k FROM mcpca_tokens t WHERE length(t.v) <> 8 OR (t.v <> '\x0000000000000000'::bytea
  AND NOT EXISTS (SELECT 1 FROM mcpca_token_expiry e WHERE e.k = t.v || t.k)) LIMIT 1`).Scan(&bad)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return unavailable("checking the used tokens", err)
	}
	return errorf("%s: used token %s is missing from the expiry index or has a bad record", s.path, bad)
}
