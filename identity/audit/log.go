// Package audit is the tamper-evident log of authorization decisions: one
// JSON line per decision (Record), each chained to the previous line's
// SHA-256, written by Log (at once or in batches, WithFlushInterval), and
// checked by Verify, which names the first line that was edited, deleted,
// reordered or truncated; WithHead also catches a cut at a record boundary
// or a re-chained forgery against a head recorded elsewhere (Log.Head). The
// MCP adapter and the Cedar authorizer write it; `mcpca audit verify` reads
// it. It imports nothing of package identity.
package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mcpca/mcpca/clock"
)

// Genesis is the prev value of the first record of an audit log: 64
// zeros, the hex of a SHA-256 that no line hashes to.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// maxAuditLine bounds one record when verifying or resuming a log.
const maxAuditLine = 1 << 20

// Record is one authorization decision, written as one JSON line.
//
// Seq and Prev are set by Log.Write: Seq counts records from 1, Prev is
// the lower-case hex SHA-256 of the previous line's bytes (without its
// newline), or Genesis for the first record. Together they chain the
// log, so Verify detects an edited, deleted, reordered or truncated
// record.
type Record struct {
	Seq       uint64         `json:"seq"`
	Prev      string         `json:"prev"`
	Time      time.Time      `json:"time"`
	SPIFFEID  string         `json:"spiffe_id"`
	Serial    string         `json:"serial,omitempty"`
	Auth      string         `json:"auth,omitempty"` // how the caller authenticated: mtls, token, bound-token, api-key
	Roles     []string       `json:"roles"`
	Method    string         `json:"method"`
	Target    string         `json:"target,omitempty"`
	Decision  string         `json:"decision"` // "allow" or "deny"
	Policies  []string       `json:"policies"` // IDs of the determining policies
	Source    string         `json:"source_address,omitempty"`
	LatencyUS float64        `json:"latency_us"` // decision latency in microseconds
	Args      map[string]any `json:"args,omitempty"`
}

// auditConfig holds the options of New and Open.
type auditConfig struct {
	args  bool
	clock clock.Clock
	flush time.Duration
}

// Option configures New and Open.
type Option interface{ applyAudit(*auditConfig) }

type auditOptionFunc func(*auditConfig)

func (f auditOptionFunc) applyAudit(c *auditConfig) { f(c) }

// WithArguments keeps Record.Args (tool argument values) in the
// log. Without it they are dropped, as they may hold sensitive data.
func WithArguments() Option {
	return auditOptionFunc(func(c *auditConfig) { c.args = true })
}

// WithClock sets the clock that stamps records written without a Time.
func WithClock(c clock.Clock) Option {
	return auditOptionFunc(func(cfg *auditConfig) { cfg.clock = clock.Or(c) })
}

// WithFlushInterval batches records: Write checks the record and
// queues it, and the queued records are encoded, chained and written
// together by a background goroutine at most d after the first of them
// (by the Write that finds 1 MiB queued, and by Flush, Head and Close). It
// takes the encoding, the hashing and the write system call off the
// caller's path; the price is that a process that dies without Close loses
// up to d of records whose requests were answered. Without it (or with
// d <= 0), the default, each record is handed to the writer before Write
// returns.
//
// A write error in the background is returned by the next Write, Flush or
// Close, and every later one.
func WithFlushInterval(d time.Duration) Option {
	return auditOptionFunc(func(c *auditConfig) { c.flush = d })
}

// maxQueued bounds (roughly, in encoded bytes) the records queued by
// WithFlushInterval: the Write that reaches it writes the queue.
const maxQueued = 1 << 20

// errAuditClosed is returned by writes after Close.
var errAuditClosed = errorf("audit log is closed")

// Log writes hash-chained audit records, one JSON line each. By
// default each record is handed to the underlying writer in its own Write
// call before Log.Write returns (nothing is held back in a buffer);
// WithFlushInterval batches them instead. It is safe for concurrent
// use: records are chained in the order their writes are serialized.
type Log struct {
	cfg    auditConfig
	w      io.Writer
	closer io.Closer

	// The chain: written under mu without WithFlushInterval, under
	// wmu (by Flush) with it.
	prev [64]byte // hex SHA-256 of the last line, or Genesis
	seq  uint64
	line []byte    // the line or batch being written, kept for reuse
	hash hash.Hash // SHA-256, reused

	mu     sync.Mutex
	err    error // sticky write error, or errAuditClosed
	closed bool  // Close has begun

	// With WithFlushInterval: queue holds the records not yet
	// written (about queuedBytes when encoded), spare the slice the last
	// flush emptied; kick wakes the flusher when the queue becomes
	// non-empty, stop ends it, and wmu serializes flushes, so that batches
	// are chained and written in order.
	queue, spare []queuedRecord
	queuedBytes  int
	kick, stop   chan struct{}
	stopped      chan struct{}
	wmu          sync.Mutex
	closeOnce    sync.Once
}

// queuedRecord is a checked record waiting for the flusher, with its
// arguments already encoded.
type queuedRecord struct {
	rec  Record
	args []byte
}

// New starts a new chain (from Genesis) on w.
func New(w io.Writer, opts ...Option) *Log {
	l := newAuditLog(w, opts)
	l.start()
	return l
}

func newAuditLog(w io.Writer, opts []Option) *Log {
	l := &Log{cfg: auditConfig{clock: clock.Real{}}, w: w, hash: sha256.New()}
	copy(l.prev[:], Genesis)
	for _, o := range opts {
		o.applyAudit(&l.cfg)
	}
	return l
}

// start starts the flusher of WithFlushInterval, once the chain's
// starting point is set.
func (l *Log) start() {
	if l.cfg.flush > 0 {
		l.kick, l.stop, l.stopped = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go l.flusher()
	}
}

// flusher writes the queue l.cfg.flush after it becomes non-empty, until
// Close.
func (l *Log) flusher() {
	defer close(l.stopped)
	for {
		select {
		case <-l.stop:
			return
		case <-l.kick:
		}
		t := l.cfg.clock.NewTimer(l.cfg.flush)
		select {
		case <-l.stop:
			t.Stop()
			return
		case <-t.C():
		}
		_ = l.Flush()
	}
}

// Flush encodes, chains and writes the records queued by
// WithFlushInterval now. It returns the log's sticky error, if any
// (also without that option): a failed write, or that the log is closed.
func (l *Log) Flush() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	batch := l.queue
	l.queue, l.spare, l.queuedBytes = l.spare[:0], nil, 0
	err := l.err
	l.mu.Unlock()
	if err == nil && len(batch) > 0 {
		buf := l.line[:0]
		for i := range batch {
			buf = l.appendLine(buf, &batch[i].rec, batch[i].args)
		}
		err = writeAll(l.w, buf)
		if cap(buf) <= 2*maxQueued {
			l.line = buf
		}
	}
	clear(batch) // let the records' strings and arguments go
	l.mu.Lock()
	defer l.mu.Unlock()
	l.spare = batch[:0]
	if err != nil && l.err == nil {
		l.err = err
	}
	return l.err
}

// Open opens (creating with mode 0600) the audit log at path for
// appending. An existing log is resumed: the chain continues from its last
// line. A log whose last line is incomplete or not a record is refused, so
// a damaged log is never silently extended; check it with Verify.
func Open(path string, opts ...Option) (*Log, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, errorf("opening audit log: %w", err)
	}
	last, err := lastLine(f)
	if err != nil {
		f.Close()
		return nil, errorf("audit log %s: %w", path, err)
	}
	l := newAuditLog(f, opts)
	l.closer = f
	if last != nil {
		var r Record
		if err := json.Unmarshal(last, &r); err != nil || r.Seq == 0 {
			f.Close()
			return nil, errorf("audit log %s: its last line is not an audit record; check it with mcpca audit verify", path)
		}
		sum := sha256.Sum256(last)
		hex.Encode(l.prev[:], sum[:])
		l.seq = r.Seq
	}
	l.start()
	return l, nil
}

// lastLine returns the last line of f without its newline, nil for an empty
// file, and an error if the file does not end with a newline.
func lastLine(f *os.File) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size == 0 {
		return nil, nil
	}
	n := min(size, maxAuditLine+1)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return nil, err
	}
	if buf[len(buf)-1] != '\n' {
		return nil, errors.New("the last record is incomplete (the log was truncated or a write was torn); check it with mcpca audit verify")
	}
	buf = buf[:len(buf)-1]
	i := bytes.LastIndexByte(buf, '\n')
	if i < 0 && n < size {
		return nil, errors.New("the last record is too long")
	}
	return buf[i+1:], nil
}

// maxAuditTarget bounds the target of one record; a longer one is cut and
// followed by the SHA-256 of the whole, so records stay comparable.
const maxAuditTarget = 1024

func boundTarget(t string) string {
	if len(t) <= maxAuditTarget {
		return t
	}
	sum := sha256.Sum256([]byte(t))
	cut := maxAuditTarget
	for cut > 0 && !utf8.RuneStart(t[cut]) {
		cut--
	}
	return t[:cut] + "...(" + strconv.Itoa(len(t)) + " bytes, sha256:" + hex.EncodeToString(sum[:]) + ")"
}

// Write appends r, setting its Seq and Prev (and its Time, if zero), and
// hands its line to the writer (or, with WithFlushInterval, queues
// it). A record that cannot be encoded is refused with an error and not
// logged. After a write error every later Write fails with that error.
func (l *Log) Write(r Record) error {
	if r.Time.IsZero() {
		r.Time = l.cfg.clock.Now()
	}
	r.Time = r.Time.UTC()
	if !l.cfg.args {
		r.Args = nil
	}
	if r.Roles == nil {
		r.Roles = []string{}
	}
	if r.Policies == nil {
		r.Policies = []string{}
	}
	// A client chooses the target (a tool name, a URI): bound it, so one
	// request can never write a record too long to resume or verify.
	r.Target = boundTarget(r.Target)
	args, err := checkRecord(&r)
	if err != nil {
		return errorf("encoding audit record: %w", err)
	}
	if l.kick != nil {
		full, err := l.enqueue(&r, args)
		if full {
			return l.Flush()
		}
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return errAuditClosed
	}
	line := l.appendLine(l.line[:0], &r, args)
	if cap(line) <= maxPooledRecord {
		l.line = line
	}
	// One write per record: nothing is left in a buffer of ours.
	if err := writeAll(l.w, line); err != nil {
		l.err = err
		return err
	}
	return nil
}

// enqueue queues a checked record for the flusher; full reports that the
// queue reached maxQueued, for the caller to flush it.
func (l *Log) enqueue(r *Record, args []byte) (full bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return false, l.err
	}
	if l.closed {
		return false, errAuditClosed
	}
	if len(l.queue) == 0 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	l.queue = append(l.queue, queuedRecord{rec: *r, args: args})
	l.queuedBytes += 256 + len(r.Target) + len(args) + len(r.SPIFFEID) + len(r.Method)
	return l.queuedBytes >= maxQueued, nil
}

// appendLine appends the line of record r (args: its encoded arguments) as
// the next one of the chain, and advances the chain to it.
func (l *Log) appendLine(b []byte, r *Record, args []byte) []byte {
	seq := l.seq + 1
	start := len(b)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"prev":"`...)
	b = append(b, l.prev[:]...)
	b = append(b, '"')
	b = appendRecordFields(b, r, args)
	l.hash.Reset()
	l.hash.Write(b[start:])
	var sum [sha256.Size]byte
	hex.Encode(l.prev[:], l.hash.Sum(sum[:0]))
	l.seq = seq
	return append(b, '\n')
}

// writeAll writes b with one Write call; a short write is an error.
func writeAll(w io.Writer, b []byte) error {
	n, err := w.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return errorf("writing audit log: %w", err)
	}
	return nil
}

// maxPooledRecord is the largest line buffer kept for reuse.
const maxPooledRecord = 16 << 10

// Head returns the sequence number of the last record written and the hex
// SHA-256 of its line. Recording the head elsewhere (a metrics system, a
// second log) anchors the chain, so that removing its tail is detectable too.
func (l *Log) Head() (seq uint64, hash string) {
	_ = l.Flush() // with WithFlushInterval, chain what is queued
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, string(l.prev[:])
}

// Close writes the queued records (WithFlushInterval), stops the
// flusher and closes the file Open opened; later writes fail. It
// returns the first error of these steps, or the log's earlier write error;
// calling it again returns nil.
func (l *Log) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true // no record is accepted from here on
		l.mu.Unlock()
		if l.stop != nil {
			close(l.stop)
			<-l.stopped
		}
		err = l.Flush()
		l.mu.Lock()
		if l.err == nil {
			l.err = errAuditClosed
		}
		closer := l.closer
		l.closer = nil
		l.mu.Unlock()
		if closer != nil {
			if cerr := closer.Close(); cerr != nil && err == nil {
				err = errorf("closing audit log: %w", cerr)
			}
		}
	})
	return err
}

// Error locates the first problem Verify found.
type Error struct {
	Line   int    // 1-based line number of the first bad line
	Reason string // what is wrong: edited, deleted, reordered, truncated, ...
}

// Error renders "audit: line N: REASON".
func (e *Error) Error() string {
	return fmt.Sprintf("audit: line %d: %s", e.Line, e.Reason)
}

// Verify reads an audit log and checks its chain. It returns the number
// of records and, for a log that does not verify, an *Error naming
// the first bad line and why:
//
//   - a line that is not a record, or a record whose hash does not match the
//     next record's prev: the line was edited;
//   - a sequence number that jumps forward, or a first record that does not
//     start from Genesis: records were deleted;
//   - a sequence number that goes back: records were reordered;
//   - a last line without its newline: the log was truncated.
//
// Removing whole records from the end cannot be seen from the log alone;
// compare the returned count (or Log.Head) with an anchored value.
func Verify(r io.Reader, opts ...VerifyOption) (int, error) {
	var cfg verifyConfig
	for _, o := range opts {
		o.applyVerify(&cfg)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	prevHash, prevSeq := Genesis, uint64(0)
	for n := 1; ; n++ {
		line, err := readAuditLine(br)
		if err == io.EOF && len(line) == 0 {
			if cfg.headSeq > prevSeq {
				return n - 1, &Error{Line: n, Reason: fmt.Sprintf("the log ends at seq %d, before the recorded head seq %d: records were removed from its end", prevSeq, cfg.headSeq)}
			}
			return n - 1, nil
		}
		if err == io.EOF {
			return n - 1, &Error{Line: n, Reason: "incomplete last record (no newline): the log was truncated"}
		}
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return n - 1, &Error{Line: n, Reason: fmt.Sprintf("line longer than %d bytes: not an audit record", maxAuditLine)}
			}
			return n - 1, errorf("reading audit log: %w", err)
		}
		seq, prev, ok := parseChain(line)
		if !ok {
			return n - 1, &Error{Line: n, Reason: "not an audit record: the line was edited or the log corrupted"}
		}
		switch {
		case seq > prevSeq+1:
			if later, found := findSeq(br, prevSeq+1, seq); found {
				return n - 1, &Error{Line: n, Reason: fmt.Sprintf("seq %d comes before seq %d: records reordered", seq, later)}
			}
			if n == 1 {
				return n - 1, &Error{Line: n, Reason: fmt.Sprintf("first record has seq %d: records 1-%d were deleted", seq, seq-1)}
			}
			return n - 1, &Error{Line: n, Reason: fmt.Sprintf("seq %d follows seq %d: records deleted", seq, prevSeq)}
		case seq <= prevSeq:
			return n - 1, &Error{Line: n, Reason: fmt.Sprintf("seq %d follows seq %d: records reordered or duplicated", seq, prevSeq)}
		case prev != prevHash:
			if n == 1 {
				return n - 1, &Error{Line: n, Reason: "first record does not chain from the genesis value: the line was edited"}
			}
			// The previous line no longer hashes to what this record saw
			// when it was written: the previous line was edited.
			return n - 2, &Error{Line: n - 1, Reason: fmt.Sprintf("record was edited: its hash does not match the prev of line %d", n)}
		}
		sum := sha256.Sum256(line)
		prevHash, prevSeq = hex.EncodeToString(sum[:]), seq
		if cfg.headSeq != 0 && seq == cfg.headSeq && prevHash != cfg.headHash {
			return n - 1, &Error{Line: n, Reason: fmt.Sprintf("record seq %d hashes to %s, not to the recorded head %s: the log was rewritten", seq, prevHash, cfg.headHash)}
		}
	}
}

// VerifyOption configures Verify.
type VerifyOption interface{ applyVerify(*verifyConfig) }

type verifyConfig struct {
	headSeq  uint64
	headHash string
}

type verifyOptionFunc func(*verifyConfig)

func (f verifyOptionFunc) applyVerify(c *verifyConfig) { f(c) }

// WithHead checks the log against a head recorded elsewhere (what
// Log.Head returned, kept out of reach of whoever can write the log):
// the log must hold the record seq and that record's line must hash to
// hash. Without it a log whose tail was cut, or whose records were edited
// and the chain recomputed from there on, still verifies.
func WithHead(seq uint64, hash string) VerifyOption {
	return verifyOptionFunc(func(c *verifyConfig) { c.headSeq, c.headHash = seq, strings.ToLower(hash) })
}

// ParseHead reads a head written as SEQ:HASH (the form `mcpca audit verify
// --head` takes): a positive decimal sequence number and a hex SHA-256.
func ParseHead(s string) (uint64, string, error) {
	seqText, hash, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if !ok || err != nil || seq == 0 {
		return 0, "", errorf("head %q: want SEQ:HASH, e.g. 42:%s (what Log.Head returns)", truncate(s), Genesis)
	}
	if b, err := hex.DecodeString(hash); err != nil || len(b) != sha256.Size {
		return 0, "", errorf("head %q: the hash is not a hex SHA-256", truncate(s))
	}
	return seq, strings.ToLower(hash), nil
}

// parseChain decodes the chain fields of a record line.
func parseChain(line []byte) (seq uint64, prev string, ok bool) {
	var rec struct {
		Seq  uint64 `json:"seq"`
		Prev string `json:"prev"`
	}
	if json.Unmarshal(line, &rec) != nil || rec.Seq == 0 || len(rec.Prev) != len(Genesis) {
		return 0, "", false
	}
	return rec.Seq, rec.Prev, true
}

// findSeq reads the rest of the log for a record with seq in [lo, hi): found
// means the records are out of order rather than deleted.
func findSeq(br *bufio.Reader, lo, hi uint64) (uint64, bool) {
	for {
		line, err := readAuditLine(br)
		if err != nil {
			return 0, false
		}
		if seq, _, ok := parseChain(line); ok && seq >= lo && seq < hi {
			return seq, true
		}
	}
}

// readAuditLine reads one line without its newline; io.EOF with a non-empty
// line means the last line has no newline.
func readAuditLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxAuditLine+1 {
			return nil, bufio.ErrBufferFull
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, err
		}
	}
}
