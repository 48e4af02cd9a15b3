package audit

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzVerifyLog checks arbitrary bytes as an audit log. Invariants: no
// panic; the count never exceeds the number of lines; a failure is an
// *Error naming a line after the records it counted.
func FuzzVerifyLog(f *testing.F) {
	var good bytes.Buffer
	l := New(&good)
	for i := range 3 {
		l.Write(auditRecord(i))
	}
	f.Add(good.Bytes())
	f.Add([]byte(""))
	f.Add([]byte("\n"))
	f.Add([]byte(`{"seq":1,"prev":"` + Genesis + `"}` + "\n"))
	f.Add(bytes.Replace(good.Bytes(), []byte("allow"), []byte("deny!"), 1))
	f.Add(good.Bytes()[:good.Len()-3])
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Verify(bytes.NewReader(data))
		if n > strings.Count(string(data), "\n") {
			t.Fatalf("counted %d records in %d lines", n, strings.Count(string(data), "\n"))
		}
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Line < 1 || ae.Line > n+1 || !strings.HasPrefix(err.Error(), "audit: line ") {
				t.Fatalf("n=%d err=%v", n, err)
			}
		}
	})
}
