package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mcpca/mcpca/identity/mcpauth"
)

// maxEventBytes bounds one server-sent event from the upstream.
const maxEventBytes = 16 << 20

// event is one server-sent event: its fields as they came, data joined.
type event struct {
	id, name, retry string
	hasID           bool
	data            []byte
	hasData         bool
}

// readEvent reads the next event of an SSE stream (WHATWG HTML, "event
// stream interpretation"); io.EOF at the end. Comments are dropped.
func readEvent(br *bufio.Reader) (*event, error) {
	ev := &event{}
	size := 0
	seen := false
	for {
		line, err := readLine(br, maxEventBytes-size)
		if err != nil && (len(line) == 0 || !errors.Is(err, io.EOF)) {
			if errors.Is(err, io.EOF) && seen {
				return ev, nil
			}
			return nil, err
		}
		size += len(line)
		if size > maxEventBytes {
			return nil, fmt.Errorf("an event exceeds %d bytes", maxEventBytes)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if seen {
				return ev, nil
			}
			if err != nil {
				return nil, err
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		seen = true
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if ev.hasData {
				ev.data = append(ev.data, '\n')
			}
			ev.data = append(ev.data, value...)
			ev.hasData = true
		case "id":
			ev.id, ev.hasID = string(value), true
		case "event":
			ev.name = string(value)
		case "retry":
			ev.retry = string(value)
		}
		if err != nil {
			return ev, nil
		}
	}
}

// readLine reads one line of at most limit bytes (its newline included).
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		part, err := br.ReadSlice('\n')
		if len(line)+len(part) > limit {
			return nil, fmt.Errorf("an event exceeds %d bytes", maxEventBytes)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			line = append(line, part...)
			continue
		}
		if line == nil {
			return part, err
		}
		return append(line, part...), err
	}
}

// write writes ev to w in SSE form, in one Write.
func (ev *event) write(w io.Writer) error {
	n := len(ev.name) + len(ev.id) + len(ev.retry) + len(ev.data) + 32
	b := make([]byte, 0, n)
	if ev.name != "" {
		b = append(append(append(b, "event: "...), ev.name...), '\n')
	}
	if ev.hasID {
		b = append(append(append(b, "id: "...), ev.id...), '\n')
	}
	if ev.retry != "" {
		b = append(append(append(b, "retry: "...), ev.retry...), '\n')
	}
	if ev.hasData {
		data := ev.data
		for {
			line, rest, more := bytes.Cut(data, []byte("\n"))
			b = append(append(append(b, "data: "...), line...), '\n')
			if !more {
				break
			}
			data = rest
		}
	}
	b = append(b, '\n')
	_, err := w.Write(b)
	return err
}

// readers holds the bufio.Readers of relayStream: 64 KiB each, too large
// to allocate per request.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// relayStream relays an SSE stream of the upstream to w, event by event,
// each JSON-RPC message prepared for c (relayMessage), flushing after each
// but the response to req (the stream's own request, nil for a GET
// stream), after which the upstream ends the stream and the end of the
// handler writes it out: headers, events and end in as few writes as the
// stream allows. An event the gateway cannot check ends the stream (the
// client's SDK then reports the request failed, or resumes), never passes
// unchecked.
//
// It reports whether the stream is resumable: whether an event had an ID.
func (gw *Gateway) relayStream(w http.ResponseWriter, body io.Reader, c *mcpauth.Caller, req *jsonrpc.Request) (resumable bool, _ error) {
	rc := http.NewResponseController(w)
	if req == nil || !req.IsCall() {
		// A standalone (GET) stream may stay silent for long: its client
		// waits for the headers to know it is open.
		_ = rc.Flush()
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()
	for {
		ev, err := readEvent(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return resumable, nil
			}
			return resumable, err
		}
		resumable = resumable || (ev.hasID && ev.id != "")
		// An event with empty data carries no message: the priming event
		// (an event ID for Last-Event-ID, MCP 2025-11-25) and keep-alives
		// pass as they came.
		final := false
		// Every event with data is checked, whatever its name says:
		// clients differ on which names they read as "message".
		if len(ev.data) > 0 {
			out, msg, err := gw.relayMessage(ev.data, c)
			if err != nil {
				gw.cfg.metrics.upstreamError()
				return resumable, fmt.Errorf("upstream event %q: %w", ev.id, err)
			}
			ev.data = out
			if resp, ok := msg.(*jsonrpc.Response); ok && req != nil && req.IsCall() && resp.ID == req.ID {
				final = true
			}
		}
		if err := ev.write(w); err != nil {
			return resumable, err
		}
		if !final {
			if err := rc.Flush(); err != nil {
				return resumable, err
			}
		}
	}
}
