package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReadEvent holds the SSE reader to its promise on whatever an
// upstream sends: no panic, a bounded loop, and every event it reads
// written back out reads as the same event.
func FuzzReadEvent(f *testing.F) {
	for _, s := range []string{
		"id: 1\ndata: {\"a\":1}\n\n", "event: message\ndata: a\ndata: b\n\n", ": comment\n\n", "id: 7\ndata:\n\n",
		"data: x\r\n\r\n", "retry: 10\nid:\n\n", "data", "\n\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		for range len(in) + 2 {
			ev, err := readEvent(br)
			if err != nil {
				if !errors.Is(err, io.EOF) && ev != nil {
					t.Fatalf("an error with an event: %v", err)
				}
				return
			}
			if !ev.hasID && !ev.hasData && ev.name == "" && ev.retry == "" {
				continue // unknown fields only: nothing to pass on
			}
			var out bytes.Buffer
			if err := ev.write(&out); err != nil {
				t.Fatal(err)
			}
			again, err := readEvent(bufio.NewReader(&out))
			if err != nil || again.id != ev.id || again.hasID != ev.hasID || again.name != ev.name ||
				!bytes.Equal(again.data, ev.data) || again.hasData != ev.hasData {
				t.Fatalf("%q: read %+v, written %q, read again %+v (%v)", in, ev, out.Bytes(), again, err)
			}
		}
		t.Fatalf("%q: more events than bytes", in)
	})
}
