package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// maxAuditArgs bounds the encoded arguments of one record; larger ones
// are replaced by a note of their size.
const maxAuditArgs = maxAuditLine / 2

// checkRecord reports whether r can be encoded (JSON has no NaN, and a time
// has four-digit years) and returns its encoded arguments: nil for none, a
// note of their size when they exceed maxAuditArgs.
func checkRecord(r *Record) (args []byte, err error) {
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return nil, errors.New("record time year outside of range [0,9999]")
	}
	if math.IsInf(r.LatencyUS, 0) || math.IsNaN(r.LatencyUS) {
		return nil, errors.New("latency is not a finite number")
	}
	if len(r.Args) == 0 {
		return nil, nil
	}
	if args, err = json.Marshal(r.Args); err != nil {
		return nil, err
	}
	if len(args) > maxAuditArgs {
		return json.Marshal(map[string]string{"_truncated": fmt.Sprintf("arguments of %d bytes omitted", len(args))})
	}
	return args, nil
}

// appendRecordFields appends the fields of a record that checkRecord
// accepted, after seq and prev, and the closing brace, exactly as
// encoding/json would encode them (the same order, omitempty rules,
// HTML-safe string escaping and number format), so that a log reads the
// same whichever wrote it; args are the encoded r.Args from checkRecord. It
// writes the record without reflection: it runs on every authorized request.
func appendRecordFields(b []byte, r *Record, args []byte) []byte {
	b = append(b, `,"time":"`...)
	b = appendUTCTime(b, r.Time)
	b = append(b, `","spiffe_id":`...)
	b = appendJSONString(b, r.SPIFFEID)
	if r.Serial != "" {
		b = append(b, `,"serial":`...)
		b = appendJSONString(b, r.Serial)
	}
	if r.Auth != "" {
		b = append(b, `,"auth":`...)
		b = appendJSONString(b, r.Auth)
	}
	b = append(b, `,"roles":`...)
	b = appendJSONStrings(b, r.Roles)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, r.Method)
	if r.Target != "" {
		b = append(b, `,"target":`...)
		b = appendJSONString(b, r.Target)
	}
	b = append(b, `,"decision":`...)
	b = appendJSONString(b, r.Decision)
	b = append(b, `,"policies":`...)
	b = appendJSONStrings(b, r.Policies)
	if r.Source != "" {
		b = append(b, `,"source_address":`...)
		b = appendJSONString(b, r.Source)
	}
	b = append(b, `,"latency_us":`...)
	b = appendJSONFloat(b, r.LatencyUS)
	if len(args) > 0 {
		b = append(b, `,"args":`...)
		b = append(b, args...)
	}
	return append(b, '}')
}

// appendJSONStrings appends ss as a JSON array; nil is [] (Write replaces a
// nil slice before encoding, as the format has no null arrays).
func appendJSONStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONFloat formats f as encoding/json does: like ES6, shortest
// representation, exponent form only below 1e-6 or from 1e21, and no
// zero padding of a negative exponent.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string with encoding/json's default
// escaping: quotes, backslashes and control characters escaped, <, > and &
// as \u003c, \u003e and \u0026, U+2028 and U+2029 escaped, and each byte
// of invalid UTF-8 replaced by \ufffd.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, `\b`...)
			case '\f':
				b = append(b, `\f`...)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendUTCTime appends t, a UTC time with a four-digit year, as
// time.RFC3339Nano formats it (and encoding/json encodes a time.Time):
// fractional seconds without trailing zeros, none when zero, and "Z". It
// keeps the stack shallow, unlike the general formatter.
func appendUTCTime(b []byte, t time.Time) []byte {
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	if ns := t.Nanosecond(); ns != 0 {
		width := 9
		for ns%10 == 0 {
			ns /= 10
			width--
		}
		b = append(b, '.')
		b = appendDigits(b, ns, width)
	}
	return append(b, 'Z')
}

// appendDigits appends v >= 0 in decimal, zero-padded to width digits.
func appendDigits(b []byte, v, width int) []byte {
	var buf [10]byte
	i := len(buf)
	for v > 0 || width > 0 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	return append(b, buf[i:]...)
}
