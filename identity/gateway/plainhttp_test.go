package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingServer is an httptest server that counts the connections it
// accepted and tells when one closed.
type countingServer struct {
	*httptest.Server
	mu     sync.Mutex
	opened int
	closed chan struct{}
}

func newCountingServer(t *testing.T, h http.HandlerFunc) *countingServer {
	s := &countingServer{closed: make(chan struct{}, 16)}
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.mu.Lock()
			s.opened++
			s.mu.Unlock()
		case http.StateClosed, http.StateHijacked:
			s.closed <- struct{}{}
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened
}

func newPlain(timeout time.Duration, maxIdle int) *plainTransport {
	return &plainTransport{headerTimeout: timeout, maxIdle: maxIdle, idleTimeout: time.Hour}
}

func post(t *testing.T, rt http.RoundTripper, ctx context.Context, url, body string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return rt.RoundTrip(req)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Requests one after the other share one connection; the request and its
// answer arrive whole, chunked or not.
func TestPlainTransportKeepsConnections(t *testing.T) {
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/chunked" {
			w.Write([]byte("got "))
			w.(http.Flusher).Flush()
		}
		w.Write(b)
	})
	tr := newPlain(time.Minute, 4)
	defer tr.CloseIdleConnections()
	for i, path := range []string{"/mcp", "/chunked", "/mcp"} {
		resp, err := post(t, tr, context.Background(), s.URL+path, "hello")
		if err != nil {
			t.Fatal(err)
		}
		want := "hello"
		if path == "/chunked" {
			want = "got hello"
		}
		if got := readAll(t, resp); got != want {
			t.Fatalf("request %d: %q, want %q", i, got, want)
		}
	}
	if n := s.conns(); n != 1 {
		t.Fatalf("%d connections for three requests in a row, want 1", n)
	}
}

// An idle connection the upstream closed is not used: the next request,
// a POST that must not be sent twice, goes on a new connection.
func TestPlainTransportSkipsClosedIdleConnections(t *testing.T) {
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	tr := newPlain(time.Minute, 4)
	defer tr.CloseIdleConnections()
	resp, err := post(t, tr, context.Background(), s.URL, "1")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	s.CloseClientConnections()
	<-s.closed
	// Wait until this side has read the close (as a connection idle for
	// long would have), then use the transport.
	tr.mu.Lock()
	idle := tr.idle[strings.TrimPrefix(s.URL, "http://")]
	tr.mu.Unlock()
	if len(idle) != 1 {
		t.Fatalf("%d idle connections, want 1", len(idle))
	}
	for alive(idle[0].conn) {
		time.Sleep(time.Millisecond)
	}
	resp, err = post(t, tr, context.Background(), s.URL, "2")
	if err != nil {
		t.Fatalf("after the upstream closed the idle connection: %v", err)
	}
	if got := readAll(t, resp); got != "ok" || s.conns() != 2 {
		t.Fatalf("%q on %d connections, want \"ok\" on 2", got, s.conns())
	}
}

// rawServer answers each connection with fn, reading one request first.
func rawServer(t *testing.T, fn func(c net.Conn, r *http.Request)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				r, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, r.Body)
				fn(c, r)
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/mcp"
}

// The answers that are not one: a 1xx before the answer is skipped, 101
// and garbage are refused with what went wrong, a connection that ends
// before its answer says so, and Connection: close is not kept.
func TestPlainTransportReadsAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, answer, body, err string
	}{
		{"early hints", "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok", ""},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", "until the end", ""},
		{"switch", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "", "it switched protocols (101), which the gateway never asks for"},
		{"garbage", "SSH-2.0-OpenSSH_9.2\r\n\r\n", "", `reading its answer: malformed HTTP response "SSH-2.0-OpenSSH_9.2"`},
		{"hang up", "", "", "the upstream closed the connection before answering (EOF)"},
		{"too many 1xx", strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 6), "", "more than 5 informational (1xx) answers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := rawServer(t, func(c net.Conn, _ *http.Request) { io.WriteString(c, tc.answer) })
			tr := newPlain(time.Minute, 4)
			defer tr.CloseIdleConnections()
			resp, err := post(t, tr, context.Background(), url, "{}")
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, resp); got != tc.body {
				t.Fatalf("body %q, want %q", got, tc.body)
			}
			tr.mu.Lock()
			defer tr.mu.Unlock()
			want := 1
			if tc.name == "close" {
				want = 0
			}
			if n := len(tr.idle[strings.TrimPrefix(strings.TrimSuffix(url, "/mcp"), "http://")]); n != want {
				t.Fatalf("%d idle connections, want %d", n, want)
			}
		})
	}
}

// No answer within the header timeout is an error that names the bound;
// a request whose context ends is given up at once, waiting for its answer
// or in the middle of its body, and its connection is not kept.
func TestPlainTransportGivesUp(t *testing.T) {
	hang := make(chan struct{})
	started := make(chan struct{}, 4)
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // then net/http sees the client go away
		if r.URL.Path == "/stream" {
			w.Write([]byte("data: 1\n\n"))
			w.(http.Flusher).Flush()
		}
		started <- struct{}{}
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	defer close(hang)
	tr := newPlain(50*time.Millisecond, 4)
	defer tr.CloseIdleConnections()
	_, err := post(t, tr, context.Background(), s.URL, "{}")
	var ne net.Error
	if err == nil || err.Error() != "timeout awaiting response headers (the upstream timeout is 50ms)" || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("error %v, want the header timeout", err)
	}
	<-started

	tr.headerTimeout = 0
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := post(t, tr, ctx, s.URL, "{}")
		errc <- err
	}()
	<-started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}

	// An event stream closed before its end: the close does not wait
	// for the rest, and the connection is closed.
	resp, err := post(t, tr, context.Background(), s.URL+"/stream", "{}")
	if err != nil {
		t.Fatal(err)
	}
	<-started
	buf := make([]byte, 9)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "data: 1\n\n" {
		t.Fatalf("%q %v", buf, err)
	}
	resp.Body.Close()
	for range 3 {
		<-s.closed // the timed-out, the cancelled and the stream's
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if n := len(tr.idle[strings.TrimPrefix(s.URL, "http://")]); n != 0 {
		t.Fatalf("%d idle connections, want none", n)
	}
}

// At most maxIdle connections stay idle, and not past the idle timeout.
func TestPlainTransportBoundsIdleConnections(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		w.Write([]byte("ok"))
	})
	tr := newPlain(time.Minute, 2)
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			resp, err := post(t, tr, context.Background(), s.URL, "{}")
			if err != nil {
				t.Error(err)
				return
			}
			readAll(t, resp)
		})
	}
	for range 3 {
		<-started
	}
	close(release)
	wg.Wait()
	<-s.closed // the third connection
	key := strings.TrimPrefix(s.URL, "http://")
	tr.mu.Lock()
	n := len(tr.idle[key])
	tr.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d idle connections, want 2", n)
	}
	tr.mu.Lock()
	tr.idleTimeout = time.Millisecond
	tr.mu.Unlock()
	resp, err := post(t, tr, context.Background(), s.URL, "{}")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp) // back in the pool, for a millisecond
	<-s.closed
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if n := len(tr.idle[key]); n != 1 {
		t.Fatalf("%d idle connections after one expired, want 1", n)
	}
}

// An upstream that answers more than it was asked (a second answer
// queued after the first) does not get that answer read as the next
// request's: the connection is out of step and not used again.
func TestPlainTransportRefusesUnaskedBytes(t *testing.T) {
	url := rawServer(t, func(c net.Conn, _ *http.Request) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
		io.Copy(io.Discard, c) // keep the connection open
	})
	tr := newPlain(time.Minute, 4)
	defer tr.CloseIdleConnections()
	for i := range 2 {
		resp, err := post(t, tr, context.Background(), url, "{}")
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "ok" {
			t.Fatalf("request %d read %q, want \"ok\"", i, got)
		}
	}
}
