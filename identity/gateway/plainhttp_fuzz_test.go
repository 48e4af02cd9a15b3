package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzPlainTransportAnswer feeds any bytes to plainTransport as an
// upstream's answer: it returns a response or an error, never hangs or
// panics, reads a body no further than the answer goes, and keeps a
// connection only after a whole answer whose length it knew.
func FuzzPlainTransportAnswer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Trailer: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nto the end",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
		"garbage",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		tr := &plainTransport{headerTimeout: 5 * time.Second, maxIdle: 4, idleTimeout: time.Hour}
		served := make(chan struct{})
		tr.dial = func(context.Context, string, string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				defer close(served)
				defer server.Close()
				r, err := http.ReadRequest(bufio.NewReader(server))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, r.Body)
				_, _ = server.Write(answer)
			}()
			return client, nil
		}
		req, err := http.NewRequest(http.MethodPost, "http://upstream.test/mcp", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, int64(len(answer))+1))
			resp.Body.Close()
		}
		tr.mu.Lock()
		n := len(tr.idle["upstream.test:80"])
		tr.mu.Unlock()
		if n > 0 && (err != nil || resp.Close || resp.ContentLength < 0 && len(resp.TransferEncoding) == 0) {
			t.Fatalf("a connection kept after %v (close %v, length %d)", err, resp != nil && resp.Close, resp.ContentLength)
		}
		tr.CloseIdleConnections() // a pipe's writer waits for its reader
		<-served
	})
}
