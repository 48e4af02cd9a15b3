package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/mcpauth"
)

// Stdio is an upstream MCP server run as a command that speaks MCP on its
// standard input and output (the stdio transport: one JSON-RPC message
// per line). Use it as the Transport of the gateway's HTTP client:
//
//	up, _ := gateway.NewStdio([]string{"node", "server.js", "stdio"})
//	gw, _ := gateway.New(guard, up.URL(), gateway.WithHTTPClient(&http.Client{Transport: up}))
//
// Every MCP session gets a process of its own, started by the client's
// initialize and stopped when the session ends (DELETE), when it has been
// idle for longer than the idle limit, or when the gateway stops: no
// process ever serves two sessions, so never two identities. At most a
// bounded number run at once. A process that dies fails the calls it had
// in flight with a JSON-RPC error saying so, and its session ends (the
// client's next request is answered 404, and it starts a new session, with
// a fresh process); processes that keep dying at start are started again
// only after a growing delay.
//
// Messages from the process reach the client on the stream of the request
// they belong to: its response, progress notifications naming its
// progress token, and (while calls are in flight) the server's own
// requests and notifications, on the stream of the newest call; otherwise
// on the client's standalone GET stream, or kept (a bounded number) until
// the client opens one.
type Stdio struct {
	argv   []string
	cfg    stdioConfig
	mu     sync.Mutex
	byID   map[string]*stdioSession
	fails  int       // processes that died soon after starting, in a row
	waitTo time.Time // no process is started before
	lastEx string    // how the last one ended
	closed bool
	stop   chan struct{}
}

// StdioOption configures NewStdio.
type StdioOption interface{ applyStdio(*stdioConfig) }

type stdioOptionFunc func(*stdioConfig)

func (f stdioOptionFunc) applyStdio(c *stdioConfig) { f(c) }

type stdioConfig struct {
	maxProcs    int
	perID       int
	idle        time.Duration
	streamBytes int
	env         []string
	dir         string
	logger      *slog.Logger
	clock       clock.Clock
}

// Defaults of the stdio upstream.
const (
	DefaultMaxStdioProcesses = 64
	DefaultMaxStdioPerCaller = 8
	DefaultStdioIdle         = 15 * time.Minute
	DefaultMaxStreamBytes    = 8 << 20
	maxStdioQueued           = 256
	maxStdioLine             = 16 << 20
	// stdioStreamWait is how long a stream's messages wait for its client
	// to read, when as many as a stream holds are waiting already.
	stdioStreamWait = 10 * time.Second
)

// WithMaxProcesses bounds the processes running at once (default
// DefaultMaxStdioProcesses); when all are taken, the least recently used
// idle one is stopped, and when none is idle a new session is refused.
func WithMaxProcesses(n int) StdioOption {
	return stdioOptionFunc(func(c *stdioConfig) { c.maxProcs = n })
}

// WithMaxProcessesPerCaller bounds the processes one identity may hold at
// once (default DefaultMaxStdioPerCaller): beyond it its own least recently
// used idle process makes way, or its new session is refused, and it never
// evicts another identity's process to make room for its own.
func WithMaxProcessesPerCaller(n int) StdioOption {
	return stdioOptionFunc(func(c *stdioConfig) { c.perID = n })
}

// WithIdleTimeout stops a session's process after it has been idle this
// long (default DefaultStdioIdle).
func WithIdleTimeout(d time.Duration) StdioOption {
	return stdioOptionFunc(func(c *stdioConfig) { c.idle = d })
}

// WithMaxStreamBytes bounds the bytes of the process's messages that wait
// for one client stream to read them (default DefaultMaxStreamBytes; a
// single larger message still passes alone), as the messages waiting are
// bounded to 16 per call stream and 256 on the standalone stream. A process
// that writes more is held up for up to 10s; then the stream is closed,
// a call's with a JSON-RPC error saying why. The queue of messages for a
// standalone stream not yet open has the same bound.
func WithMaxStreamBytes(n int) StdioOption {
	return stdioOptionFunc(func(c *stdioConfig) { c.streamBytes = n })
}

// WithStdioClock sets the clock of idle times and of how long a stream
// waits for its client (default clock.Real).
func WithStdioClock(c clock.Clock) StdioOption {
	return stdioOptionFunc(func(cfg *stdioConfig) { cfg.clock = c })
}

// WithEnv sets the processes' environment (default: the gateway's).
func WithEnv(env []string) StdioOption {
	return stdioOptionFunc(func(c *stdioConfig) { c.env = env })
}

// WithDir sets the processes' working directory.
func WithDir(dir string) StdioOption {
	return stdioOptionFunc(func(c *stdioConfig) { c.dir = dir })
}

// WithStdioLogger sets where the processes' standard error and their
// starts and ends are logged (default slog.Default()).
func WithStdioLogger(l *slog.Logger) StdioOption {
	return stdioOptionFunc(func(c *stdioConfig) { c.logger = l })
}

// NewStdio returns a stdio upstream running argv (no shell: argv[0] is the
// program, the rest its arguments).
func NewStdio(argv []string, opts ...StdioOption) (*Stdio, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, errorf("the stdio upstream needs a command")
	}
	cfg := stdioConfig{maxProcs: DefaultMaxStdioProcesses, perID: DefaultMaxStdioPerCaller, idle: DefaultStdioIdle, streamBytes: DefaultMaxStreamBytes}
	for _, o := range opts {
		o.applyStdio(&cfg)
	}
	if cfg.maxProcs <= 0 || cfg.perID <= 0 || cfg.idle <= 0 || cfg.streamBytes <= 0 {
		return nil, errorf("the process limits, the stream bound and the idle timeout must be positive")
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	cfg.clock = clock.Or(cfg.clock)
	if _, err := exec.LookPath(argv[0]); err != nil {
		return nil, errorf("stdio upstream: %v", err)
	}
	s := &Stdio{argv: append([]string(nil), argv...), cfg: cfg, byID: make(map[string]*stdioSession), stop: make(chan struct{})}
	go s.reap()
	return s, nil
}

// URL names the upstream in messages and caller assertions:
// "stdio:" and the command.
func (s *Stdio) URL() string { return "stdio:" + strings.Join(s.argv, " ") }

// Close stops every process and refuses new sessions.
func (s *Stdio) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	sessions := make([]*stdioSession, 0, len(s.byID))
	for _, ss := range s.byID {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		ss.kill("the gateway stopped")
	}
	for _, ss := range sessions {
		<-ss.exited
	}
	return nil
}

// sessions returns the running sessions.
func (s *Stdio) sessions() []*stdioSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*stdioSession, 0, len(s.byID))
	for _, ss := range s.byID {
		out = append(out, ss)
	}
	return out
}

// Processes returns how many processes run.
func (s *Stdio) Processes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

func (s *Stdio) reap() {
	t := time.NewTicker(max(s.cfg.idle/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := s.cfg.clock.Now()
		for _, ss := range s.sessions() { // each session's lock is taken alone
			if ss.idleSince(now) >= s.cfg.idle {
				ss.kill("idle for longer than " + s.cfg.idle.String())
			}
		}
	}
}

// RoundTrip serves one HTTP request of the Streamable HTTP transport as
// the stdio server's side of it.
func (s *Stdio) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		defer r.Body.Close()
	}
	sid := r.Header.Get(sessionHeader)
	var ss *stdioSession
	if sid != "" {
		s.mu.Lock()
		ss = s.byID[sid]
		s.mu.Unlock()
		if ss == nil {
			return textResponse(r, http.StatusNotFound, "session not found"), nil
		}
	}
	switch r.Method {
	case http.MethodGet:
		if ss == nil {
			return textResponse(r, http.StatusBadRequest, "GET needs an Mcp-Session-Id"), nil
		}
		return ss.listen(r), nil
	case http.MethodDelete:
		if ss == nil {
			return textResponse(r, http.StatusBadRequest, "DELETE needs an Mcp-Session-Id"), nil
		}
		ss.kill("the client ended the session")
		return textResponse(r, http.StatusOK, ""), nil
	case http.MethodPost:
	default:
		return textResponse(r, http.StatusMethodNotAllowed, "method not allowed"), nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	msg, err := jsonrpc.DecodeMessage(body)
	if err != nil {
		return textResponse(r, http.StatusBadRequest, err.Error()), nil
	}
	req, isReq := msg.(*jsonrpc.Request)
	if ss == nil {
		if !isReq || req.Method != "initialize" || !req.IsCall() {
			return jsonResponse(r, http.StatusOK, "", errorMessage(req, CodeUpstream,
				"the stdio upstream "+s.URL()+" serves MCP sessions only: send initialize first, and its Mcp-Session-Id with every request")), nil
		}
		c, _ := r.Context().Value(callerKey{}).(*mcpauth.Caller)
		if ss, err = s.start(c); err != nil {
			return jsonResponse(r, http.StatusOK, "", errorMessage(req, CodeUpstream, err.Error())), nil
		}
	}
	if !isReq || !req.IsCall() {
		if err := ss.send(body); err != nil {
			return jsonResponse(r, http.StatusOK, "", errorMessage(nil, CodeUpstream, err.Error())), nil
		}
		return textResponse(r, http.StatusAccepted, ""), nil
	}
	return ss.call(r, req, body), nil
}

// start starts a process for a new session of caller c (nil when the
// request did not come through a Gateway).
func (s *Stdio) start(c *mcpauth.Caller) (*stdioSession, error) {
	now := s.cfg.clock.Now()
	owner := ""
	if c != nil {
		owner = c.ID()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("the gateway is stopping")
	}
	if now.Before(s.waitTo) {
		wait, last := s.waitTo.Sub(now).Round(time.Second), s.lastEx
		s.mu.Unlock()
		return nil, fmt.Errorf("the stdio upstream %s keeps exiting at start (%s): next start in %v", s.URL(), last, wait)
	}
	full := len(s.byID) >= s.cfg.maxProcs
	s.mu.Unlock()
	// The caller's own processes first: at its own limit, its least
	// recently used idle one makes way; at the global limit, anyone's,
	// since the caller is below its share.
	var own []*stdioSession
	all := s.sessions()
	for _, ss := range all {
		if ss.owner == owner {
			own = append(own, ss)
		}
	}
	var victim *stdioSession
	switch {
	case len(own) >= s.cfg.perID:
		if victim = leastRecentIdle(own, now); victim == nil {
			return nil, fmt.Errorf("%s already runs %d processes of %s, all busy (at most %d per identity): retry later", orAnon(owner), len(own), s.URL(), s.cfg.perID)
		}
	case full:
		if victim = leastRecentIdle(all, now); victim == nil {
			return nil, fmt.Errorf("the gateway runs at most %d processes of %s and all are busy: retry later", s.cfg.maxProcs, s.URL())
		}
	}
	if victim != nil {
		victim.kill("the least recently used of the gateway's processes")
		<-victim.exited
	}
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Env, cmd.Dir = callerEnv(s.cfg.env, c), s.cfg.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the stdio upstream %s: %v", s.URL(), err)
	}
	ss := &stdioSession{s: s, id: rand.Text(), owner: owner, cmd: cmd, stdin: stdin, started: now, used: now,
		pending: make(map[string]*stdioCall), exited: make(chan struct{})}
	s.mu.Lock()
	s.byID[ss.id] = ss
	s.mu.Unlock()
	s.cfg.logger.Info("gateway: stdio upstream started", "session", ss.id, "pid", cmd.Process.Pid, "command", s.URL())
	go ss.logStderr(stderr)
	go ss.readLoop(stdout)
	return ss, nil
}

func leastRecentIdle(sessions []*stdioSession, now time.Time) *stdioSession {
	var victim *stdioSession
	for _, ss := range sessions {
		if ss.idleSince(now) > 0 && (victim == nil || ss.lastUsed().Before(victim.lastUsed())) {
			victim = ss
		}
	}
	return victim
}

func orAnon(id string) string {
	if id == "" {
		return "this caller"
	}
	return id
}

// callerEnv is the environment of a process started for caller c: base
// (the gateway's own when nil) with what the process may want to know of
// the one identity it serves, MCPCA_CALLER (the SPIFFE ID),
// MCPCA_CALLER_ROLES (comma-separated) and MCPCA_CALLER_ATTR_<KEY> for
// each attribute (the key upper-cased, "." and "-" as "_"). Any such
// variable already in base is dropped first. A stdio process reads no
// headers; this is its Mcpca-Caller, and only the gateway can set it.
func callerEnv(base []string, c *mcpauth.Caller) []string {
	if base == nil {
		base = os.Environ()
	}
	env := make([]string, 0, len(base)+4)
	for _, kv := range base {
		if !strings.HasPrefix(kv, "MCPCA_CALLER") {
			env = append(env, kv)
		}
	}
	if c == nil {
		return env
	}
	id := c.Identity()
	env = append(env, "MCPCA_CALLER="+id.ID.String(), "MCPCA_CALLER_ROLES="+strings.Join(id.Roles, ","))
	keys := make([]string, 0, len(id.Attributes))
	for k := range id.Attributes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(k))
		env = append(env, "MCPCA_CALLER_ATTR_"+name+"="+id.Attributes[k])
	}
	return env
}

// ended records how a session's process ended, and backs off starts when
// processes keep dying soon after they start.
func (s *Stdio) ended(ss *stdioSession, how string, early bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, ss.id)
	s.lastEx = how
	if !early {
		s.fails = 0
		return
	}
	s.fails++
	backoff := min(time.Second<<min(s.fails-1, 6), time.Minute)
	if s.fails >= 3 {
		s.waitTo = s.cfg.clock.Now().Add(backoff)
	}
}

// stdioSession is one process and the session it serves.
type stdioSession struct {
	s       *Stdio
	id      string
	owner   string // the SPIFFE ID whose session it is ("" if unknown)
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started time.Time
	exited  chan struct{}

	wmu sync.Mutex // one line at a time on stdin

	mu          sync.Mutex
	used        time.Time
	pending     map[string]*stdioCall // by the client's request ID
	order       []*stdioCall          // in-flight calls, oldest first
	listener    *stdioStream          // the standalone GET stream, if open
	queued      [][]byte              // for the next GET stream
	queuedBytes int
	dead        string // why the process ended ("" while it runs)
	killed      string
}

// stdioStream is one SSE stream to the client: messages go to out (closed
// only by the session's reader goroutine, after the last one), stop asks
// its writer to end, done is closed when its writer has ended (then
// nothing reads out any more). The messages in out hold at most maxBytes
// bytes (one larger message alone); drained tells the sender that the
// writer took one.
type stdioStream struct {
	out      chan []byte
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	doneOnce sync.Once
	drained  chan struct{}
	clock    clock.Clock
	key      string // the id of the call it answers ("" for the standalone stream)

	mu       sync.Mutex
	bytes    int // of the messages in out
	maxBytes int
	cut      string // why the gateway closed it ("" while open)
}

func (ss *stdioSession) newStream(key string, depth int) *stdioStream {
	return &stdioStream{out: make(chan []byte, depth), stop: make(chan struct{}), done: make(chan struct{}), drained: make(chan struct{}, 1),
		clock: ss.s.cfg.clock, key: key, maxBytes: ss.s.cfg.streamBytes}
}

func (st *stdioStream) halt()  { st.stopOnce.Do(func() { close(st.stop) }) }
func (st *stdioStream) ended() { st.doneOnce.Do(func() { close(st.done) }) }

// reserve counts n more bytes in out, unless they do not fit; cut reports
// that the stream was closed.
func (st *stdioStream) reserve(n int) (ok, cut bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.cut != "" {
		return false, true
	}
	if st.bytes > 0 && st.bytes+n > st.maxBytes {
		return false, false
	}
	st.bytes += n
	return true, false
}

// taken counts n bytes out of out, and tells a waiting sender.
func (st *stdioStream) taken(n int) {
	st.mu.Lock()
	st.bytes -= n
	st.mu.Unlock()
	select {
	case st.drained <- struct{}{}:
	default:
	}
}

// cutOff closes the stream because its client does not read it: its
// writer ends it (a call's with a JSON-RPC error saying so).
func (st *stdioStream) cutOff() {
	st.mu.Lock()
	if st.cut == "" {
		st.cut = fmt.Sprintf("the gateway closed this stream: its client did not read the stdio upstream's messages within %v, and at most %d bytes or %d messages wait for a client",
			stdioStreamWait, st.maxBytes, cap(st.out))
	}
	st.mu.Unlock()
	st.halt()
}

func (st *stdioStream) cutReason() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cut
}

// send hands line to the stream's writer, never under a lock: false when
// the writer has ended or the stream was closed. When the stream holds
// as many messages or bytes as it may, send waits for the client to read
// for up to stdioStreamWait; past it, the stream is cut off (a client that
// stopped reading), so what waits for a client stays bounded.
func (st *stdioStream) send(line []byte) bool {
	var t clock.Timer
	expired := func() <-chan time.Time {
		if t == nil {
			t = st.clock.NewTimer(stdioStreamWait)
		}
		return t.C()
	}
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		ok, cut := st.reserve(len(line))
		if ok {
			break
		}
		if cut {
			return false
		}
		select {
		case <-st.drained:
		case <-st.done:
			return false
		case <-expired():
			st.cutOff()
			return false
		}
	}
	select {
	case st.out <- line:
		return true
	default:
	}
	select {
	case st.out <- line:
		return true
	case <-st.done:
	case <-expired():
		st.cutOff()
	}
	st.taken(len(line))
	return false
}

// stdioCall is one request in flight and the stream it is answered on.
type stdioCall struct {
	*stdioStream
	progress string // its progress token, if any
}

func (ss *stdioSession) lastUsed() time.Time {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.used
}

// idleSince returns how long the session has been idle at now: zero
// while a call is in flight or a GET stream is open.
func (ss *stdioSession) idleSince(now time.Time) time.Duration {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.pending) > 0 || ss.listener != nil {
		return 0
	}
	return max(now.Sub(ss.used), time.Nanosecond)
}

func (ss *stdioSession) touch() {
	ss.mu.Lock()
	ss.used = ss.s.cfg.clock.Now()
	ss.mu.Unlock()
}

// send writes one message to the process.
func (ss *stdioSession) send(msg []byte) error {
	ss.touch()
	line := append(bytes.TrimSpace(bytes.Clone(msg)), '\n')
	if bytes.IndexByte(line[:len(line)-1], '\n') >= 0 {
		var compact bytes.Buffer
		if err := json.Compact(&compact, msg); err != nil {
			return err
		}
		line = append(compact.Bytes(), '\n')
	}
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	if _, err := ss.stdin.Write(line); err != nil {
		return fmt.Errorf("the stdio upstream %s is gone: %v", ss.s.URL(), err)
	}
	return nil
}

// call sends req and answers with an SSE stream of what belongs to it,
// ending with its response.
func (ss *stdioSession) call(r *http.Request, req *jsonrpc.Request, body []byte) *http.Response {
	key := idKey(req.ID)
	c := &stdioCall{stdioStream: ss.newStream(key, 16), progress: progressToken(req.Params)}
	ss.mu.Lock()
	if ss.dead != "" {
		ss.mu.Unlock()
		return jsonResponse(r, http.StatusOK, "", errorMessage(req, CodeUpstream, ss.dead))
	}
	if _, dup := ss.pending[key]; dup {
		ss.mu.Unlock()
		return jsonResponse(r, http.StatusOK, "", errorMessage(req, jsonrpc.CodeInvalidRequest, "invalid request: a request with this id is already in flight in the session"))
	}
	ss.pending[key] = c
	ss.order = append(ss.order, c)
	ss.mu.Unlock()
	if err := ss.send(body); err != nil {
		ss.finish(key, c)
		return jsonResponse(r, http.StatusOK, "", errorMessage(req, CodeUpstream, err.Error()))
	}
	sid := ""
	if req.Method == "initialize" {
		sid = ss.id
	}
	return streamResponse(r, sid, c.stdioStream, func() { ss.finish(key, c) })
}

// finish forgets call c (its stream ended, answered or not).
func (ss *stdioSession) finish(key string, c *stdioCall) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.pending[key] == c {
		delete(ss.pending, key)
	}
	ss.dropOrder(c)
	ss.used = ss.s.cfg.clock.Now()
}

// listen opens the standalone stream: queued messages first.
func (ss *stdioSession) listen(r *http.Request) *http.Response {
	st := ss.newStream("", maxStdioQueued)
	ss.mu.Lock()
	if ss.listener != nil {
		ss.listener.halt() // the newer stream replaces it
	}
	ss.listener = st
	for _, m := range ss.queued {
		st.out <- m // fits: the queue is at most maxStdioQueued long
	}
	st.bytes = ss.queuedBytes // and at most the stream's bytes
	ss.queued, ss.queuedBytes = nil, 0
	ss.mu.Unlock()
	return streamResponse(r, "", st, func() {
		ss.mu.Lock()
		if ss.listener == st {
			ss.listener = nil
		}
		ss.mu.Unlock()
	})
}

// readLoop reads the process's messages and routes them until it exits.
func (ss *stdioSession) readLoop(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), maxStdioLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		ss.route(bytes.Clone(line))
	}
	readErr := sc.Err()
	err := ss.cmd.Wait()
	how := "exited"
	if err != nil {
		how = err.Error()
	}
	if readErr != nil {
		how += "; reading its output: " + readErr.Error()
	}
	ss.mu.Lock()
	killed := ss.killed
	ss.mu.Unlock()
	early := killed == "" && ss.s.cfg.clock.Now().Sub(ss.started) < 10*time.Second
	why := fmt.Sprintf("the stdio upstream %s ended (%s)", ss.s.URL(), how)
	if killed != "" {
		why = fmt.Sprintf("the stdio upstream's session ended: %s", killed)
	}
	ss.mu.Lock()
	ss.dead = why
	pending := ss.pending
	ss.pending, ss.order = map[string]*stdioCall{}, nil
	listener := ss.listener
	ss.listener = nil
	ss.mu.Unlock()
	for key, c := range pending {
		c.send(errorMessageID(key, CodeUpstream, why+" during the call"))
		close(c.out)
	}
	if listener != nil {
		listener.halt()
	}
	ss.s.ended(ss, how, early)
	level := slog.LevelWarn
	if killed != "" {
		level = slog.LevelInfo
	}
	ss.s.cfg.logger.Log(context.Background(), level, "gateway: stdio upstream ended", "session", ss.id, "how", how, "why", killed)
	close(ss.exited)
}

// route delivers one message of the process to the stream it belongs to.
// It picks the stream under the session's lock and sends after releasing
// it, so a client that stops reading holds up only its own stream.
func (ss *stdioSession) route(line []byte) {
	msg, err := jsonrpc.DecodeMessage(line)
	if err != nil {
		ss.s.cfg.logger.Warn("gateway: the stdio upstream wrote a line that is not JSON-RPC; dropped", "session", ss.id, "error", err)
		return
	}
	target, last := ss.pick(msg, line)
	if target == nil {
		return
	}
	if !target.send(line) {
		ss.s.cfg.logger.Warn("gateway: a stream of the stdio upstream's session did not take a message (its client went away or stopped reading); dropped", "session", ss.id)
	}
	if last {
		close(target.out)
	}
}

// pick returns the stream msg goes to (nil: queued or dropped) and
// whether it is the stream's last message (the response to its call).
func (ss *stdioSession) pick(msg jsonrpc.Message, line []byte) (*stdioStream, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if resp, ok := msg.(*jsonrpc.Response); ok {
		key := idKey(resp.ID)
		c := ss.pending[key]
		if c == nil {
			ss.s.cfg.logger.Warn("gateway: the stdio upstream answered a request not in flight; dropped", "session", ss.id, "id", key)
			return nil, false
		}
		delete(ss.pending, key)
		ss.dropOrder(c)
		return c.stdioStream, true
	}
	req := msg.(*jsonrpc.Request)
	if req.Method == "notifications/progress" {
		if tok := progressToken(req.Params); tok != "" {
			for _, c := range ss.order {
				if c.progress == tok {
					return c.stdioStream, false
				}
			}
		}
	}
	if n := len(ss.order); n > 0 {
		return ss.order[n-1].stdioStream, false
	}
	if ss.listener != nil {
		return ss.listener, false
	}
	ss.queued = append(ss.queued, line)
	ss.queuedBytes += len(line)
	for len(ss.queued) > maxStdioQueued || (ss.queuedBytes > ss.s.cfg.streamBytes && len(ss.queued) > 1) {
		ss.s.cfg.logger.Warn("gateway: no stream open for the stdio upstream's message, and the queue is full; the oldest is dropped", "session", ss.id)
		ss.queuedBytes -= len(ss.queued[0])
		ss.queued = ss.queued[1:]
	}
	return nil, false
}

func (ss *stdioSession) dropOrder(c *stdioCall) {
	for i, o := range ss.order {
		if o == c {
			ss.order = append(ss.order[:i], ss.order[i+1:]...)
			return
		}
	}
}

// kill stops the process (its group: SIGTERM, then SIGKILL after 2s).
func (ss *stdioSession) kill(why string) {
	ss.mu.Lock()
	if ss.killed == "" {
		ss.killed = why
	}
	ss.mu.Unlock()
	_ = ss.stdin.Close()
	if p := ss.cmd.Process; p != nil {
		_ = syscall.Kill(-p.Pid, syscall.SIGTERM)
		go func() {
			select {
			case <-ss.exited:
			case <-time.After(2 * time.Second):
				_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
			}
		}()
	}
}

func (ss *stdioSession) logStderr(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		ss.s.cfg.logger.Info("gateway: stdio upstream stderr", "session", ss.id, "line", sc.Text())
	}
}

// idKey is the map key of a JSON-RPC id.
func idKey(id jsonrpc.ID) string {
	b, _ := json.Marshal(id.Raw())
	return string(b)
}

func progressToken(params json.RawMessage) string {
	var p struct {
		Meta struct {
			Token json.RawMessage `json:"progressToken"`
		} `json:"_meta"`
	}
	if json.Unmarshal(params, &p) != nil || len(p.Meta.Token) == 0 {
		return ""
	}
	return string(p.Meta.Token)
}

func errorMessage(req *jsonrpc.Request, code int64, msg string) []byte {
	var id jsonrpc.ID
	if req != nil {
		id = req.ID
	}
	b, err := jsonrpc.EncodeMessage(&jsonrpc.Response{ID: id, Error: rpcError(code, msg)})
	if err != nil {
		b, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": nil, "error": rpcError(code, msg)})
	}
	return b
}

func errorMessageID(key string, code int64, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(key), "error": rpcError(code, msg)})
	return b
}

func newResponse(r *http.Request, status int, contentType string, body io.ReadCloser) *http.Response {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return &http.Response{Status: http.StatusText(status), StatusCode: status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: body, Request: r, ContentLength: -1}
}

func textResponse(r *http.Request, status int, text string) *http.Response {
	ct := ""
	if text != "" {
		ct = "text/plain; charset=utf-8"
	}
	return newResponse(r, status, ct, io.NopCloser(strings.NewReader(text)))
}

func jsonResponse(r *http.Request, status int, sid string, body []byte) *http.Response {
	resp := newResponse(r, status, "application/json", io.NopCloser(bytes.NewReader(body)))
	if sid != "" {
		resp.Header.Set(sessionHeader, sid)
	}
	return resp
}

// streamResponse answers with an SSE stream of the messages of st, until
// st.out is closed, st is halted, the request's context is done or the
// body is closed; st is marked ended, and done runs, once at the end.
func streamResponse(r *http.Request, sid string, st *stdioStream, done func()) *http.Response {
	pr, pw := io.Pipe()
	resp := newResponse(r, http.StatusOK, "text/event-stream", pr)
	if sid != "" {
		resp.Header.Set(sessionHeader, sid)
	}
	go func() {
		defer done()
		defer st.ended()
		for {
			select {
			case m, ok := <-st.out:
				if !ok {
					pw.Close()
					return
				}
				st.taken(len(m))
				ev := &event{data: m, hasData: true}
				if err := ev.write(pw); err != nil {
					return
				}
			case <-st.stop:
				if why := st.cutReason(); why != "" && st.key != "" {
					ev := &event{data: errorMessageID(st.key, CodeUpstream, why), hasData: true}
					_ = ev.write(pw)
				}
				pw.Close()
				return
			case <-r.Context().Done():
				pw.CloseWithError(r.Context().Err())
				return
			}
		}
	}()
	return resp
}
