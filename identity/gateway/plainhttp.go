package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// plainTransport is the round tripper of a plain-HTTP upstream (an
// http:// URL, as on loopback): HTTP/1.1 over keep-alive connections, each
// request written and its response read on the goroutine that sends it.
//
// net/http's Transport hands each request to a write goroutine of its
// connection and the response back from a read goroutine. On the gateway's
// path those two hand-offs per call were about a sixth of the latency it
// adds (docs/measured.md). What net/http's read goroutine also does, telling
// that an idle connection was closed by the upstream, plainTransport does
// when it takes the connection from the pool: a non-blocking peek (alive).
// TLS upstreams go through net/http's Transport.
type plainTransport struct {
	dialer        net.Dialer
	dial          func(ctx context.Context, network, addr string) (net.Conn, error) // nil: dialer's (tests)
	headerTimeout time.Duration                                                     // from the request written to the response head read; 0: none
	maxIdle       int                                                               // idle connections kept per host
	idleTimeout   time.Duration                                                     // an idle connection is closed after this long

	mu   sync.Mutex
	idle map[string][]*plainConn // host:port -> idle connections, most recent last
}

// errHeaderTimeout words a header timeout as net/http's Transport does,
// with the bound.
type errHeaderTimeout time.Duration

func (e errHeaderTimeout) Error() string {
	return fmt.Sprintf("timeout awaiting response headers (the upstream timeout is %v)", time.Duration(e))
}

func (errHeaderTimeout) Timeout() bool   { return true }
func (errHeaderTimeout) Temporary() bool { return false }

// plainConn is one connection of a plainTransport.
type plainConn struct {
	t       *plainTransport
	key     string
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	written int64 // bytes written for the current request
	timer   *time.Timer
}

func (pc *plainConn) Write(p []byte) (int, error) {
	n, err := pc.conn.Write(p)
	pc.written += int64(n)
	return n, err
}

// RoundTrip sends req and returns the response with its head read. An
// idle connection the upstream closed is not used; a request is sent again
// on a new connection only when nothing of it was written, or, for GET,
// HEAD, OPTIONS and TRACE, when a reused connection ended before an answer
// (net/http's rules).
func (t *plainTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		closeBody(req)
		return nil, fmt.Errorf("the plain-HTTP transport cannot send to %s URLs", req.URL.Scheme)
	}
	if req.URL.Host == "" {
		closeBody(req)
		return nil, errors.New("no host in the request URL")
	}
	key := req.URL.Host
	if req.URL.Port() == "" {
		key = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(req.Context(), key)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, retry, err := pc.roundTrip(req, reused)
		if err == nil {
			return resp, nil
		}
		if !retry || attempt > 0 || req.Context().Err() != nil {
			return nil, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, err
			}
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			r := *req
			r.Body = body
			req = &r
		}
	}
}

// roundTrip is one attempt on pc; retry says whether the request may be
// sent again on a new connection.
func (pc *plainConn) roundTrip(req *http.Request, reused bool) (_ *http.Response, retry bool, _ error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { pc.conn.Close() })
	fail := func(err error) (*http.Response, bool, error) {
		stop()
		pc.conn.Close()
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		return nil, false, err
	}
	pc.written = 0
	err := req.Write(pc.bw)
	if err == nil {
		err = pc.bw.Flush()
	}
	if err != nil {
		resp, _, err := fail(err)
		return resp, reused && pc.written == 0, err
	}
	if pc.t.headerTimeout > 0 {
		_ = pc.conn.SetReadDeadline(time.Now().Add(pc.t.headerTimeout))
	}
	var resp *http.Response
	for n := 0; ; n++ {
		if n == 5 {
			return fail(errors.New("more than 5 informational (1xx) answers"))
		}
		_, err := pc.br.Peek(1)
		if err == nil {
			resp, err = http.ReadResponse(pc.br, req)
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil:
				err = errHeaderTimeout(pc.t.headerTimeout)
			case n == 0 && (err == io.EOF || errors.Is(err, syscall.ECONNRESET)) && pc.br.Buffered() == 0:
				// Not a byte of an answer: the upstream closed the
				// connection (a reused one, as it went idle) or crashed.
				retry = reused && idempotent(req)
				err = fmt.Errorf("the upstream closed the connection before answering (%w)", err)
			default:
				err = fmt.Errorf("reading its answer: %w", err)
			}
			resp, _, err := fail(err)
			return resp, retry, err
		}
		// 1xx answers (103 Early Hints) come before the answer and have
		// no body; the gateway never asks for 100 Continue.
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return fail(errors.New("it switched protocols (101), which the gateway never asks for"))
	}
	if pc.t.headerTimeout > 0 {
		_ = pc.conn.SetReadDeadline(time.Time{})
	}
	resp.Body = &plainBody{pc: pc, body: resp.Body, stop: stop, keep: !resp.Close && !req.Close}
	return resp, false, nil
}

// idempotent reports whether net/http would send req again after a
// reused connection ended before answering it.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// plainBody is a response body: at its end the connection goes back to
// the pool; closed before its end, the connection is closed (an event
// stream is not read to its end).
type plainBody struct {
	pc   *plainConn
	body io.ReadCloser
	stop func() bool
	keep bool
	eof  bool
	done bool
}

func (b *plainBody) Read(p []byte) (int, error) {
	if b.eof || b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof = true
		b.release()
	}
	return n, err
}

func (b *plainBody) Close() error {
	if !b.eof {
		b.release()
	}
	return nil
}

// release ends the body's use of its connection, once.
func (b *plainBody) release() {
	if b.done {
		return
	}
	b.done = true
	if b.eof && b.keep && b.stop() {
		b.pc.t.put(b.pc)
		return
	}
	b.stop()
	b.pc.conn.Close()
}

// get returns an idle connection to key that is still open, or a new one.
func (t *plainTransport) get(ctx context.Context, key string) (_ *plainConn, reused bool, _ error) {
	for {
		t.mu.Lock()
		list := t.idle[key]
		if len(list) == 0 {
			t.mu.Unlock()
			break
		}
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		t.idle[key] = list[:len(list)-1]
		pc.timer.Stop()
		t.mu.Unlock()
		// Bytes already read past the last answer are bytes no request
		// asked for: the connection is out of step.
		if pc.br.Buffered() == 0 && alive(pc.conn) {
			return pc, true, nil
		}
		pc.conn.Close()
	}
	dial := t.dial
	if dial == nil {
		dial = t.dialer.DialContext
	}
	c, err := dial(ctx, "tcp", key)
	if err != nil {
		return nil, false, err
	}
	pc := &plainConn{t: t, key: key, conn: c, br: bufio.NewReaderSize(c, 16<<10)}
	pc.bw = bufio.NewWriterSize(pc, 16<<10)
	return pc, false, nil
}

// put keeps pc idle, unless maxIdle connections to its host are already.
func (t *plainTransport) put(pc *plainConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.idle[pc.key]) >= t.maxIdle {
		pc.conn.Close()
		return
	}
	if t.idle == nil {
		t.idle = make(map[string][]*plainConn)
	}
	t.idle[pc.key] = append(t.idle[pc.key], pc)
	if pc.timer == nil {
		pc.timer = time.AfterFunc(t.idleTimeout, func() { t.expire(pc) })
	} else {
		pc.timer.Reset(t.idleTimeout)
	}
}

// expire closes pc if it is still idle.
func (t *plainTransport) expire(pc *plainConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.idle[pc.key]
	for i, c := range list {
		if c == pc {
			t.idle[pc.key] = append(list[:i:i], list[i+1:]...)
			pc.conn.Close()
			return
		}
	}
}

// CloseIdleConnections closes the idle connections (http.Client calls it).
func (t *plainTransport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for key, list := range t.idle {
		for _, pc := range list {
			pc.timer.Stop()
			pc.conn.Close()
		}
		delete(t.idle, key)
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
