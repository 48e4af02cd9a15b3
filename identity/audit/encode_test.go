package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// marshalTail is what encoding/json makes of the fields after seq and prev:
// the reference appendRecordFields must match byte for byte.
func marshalTail(t testing.TB, r *Record) []byte {
	t.Helper()
	c := *r
	c.Seq, c.Prev = 1, Genesis
	b, err := json.Marshal(&c)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	head := `{"seq":1,"prev":"` + Genesis + `"`
	if !bytes.HasPrefix(b, []byte(head)) {
		t.Fatalf("unexpected encoding %s", b)
	}
	return b[len(head):]
}

// encodeFields is what Write encodes of r after seq and prev.
func encodeFields(r *Record) ([]byte, error) {
	args, err := checkRecord(r)
	if err != nil {
		return nil, err
	}
	return appendRecordFields(nil, r, args), nil
}

func checkSameEncoding(t testing.TB, r *Record) {
	t.Helper()
	got, err := encodeFields(r)
	if err != nil {
		t.Fatalf("appendRecordFields(%+v): %v", r, err)
	}
	if want := marshalTail(t, r); !bytes.Equal(got, want) {
		t.Fatalf("encoding differs from encoding/json\n got: %s\nwant: %s", got, want)
	}
}

// awkward are strings that exercise every escaping rule.
var awkward = []string{
	"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\tnl\ncr\rbs\bff\f",
	"\x00\x01\x1f\x7f", "é ü 日本 🙂", "\u2028\u2029", "bad \xff utf8 \xc3", "\xed\xa0\x80 surrogate",
	"spiffe://acme.test/client/alice", "file:///etc/passwd?a=1&b=<2>",
}

func TestAppendRecordFieldsMatchesEncodingJSON(t *testing.T) {
	latencies := []float64{0, 0.5, 1.25, 12.345678, 1e-7, 3e-9, 1e21, 123456789, -2, math.SmallestNonzeroFloat64, math.MaxFloat64}
	times := []time.Time{auditT0, auditT0.Add(123456789 * time.Nanosecond), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 { // random times, with 0 to 9 significant fractional digits
		ns := rng.IntN(1e9)
		ns -= ns % []int{1, 10, 1000, 1e6, 1e9}[rng.IntN(5)]
		times = append(times, time.Date(rng.IntN(10000), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), ns, time.UTC))
	}
	pick := func() string { return awkward[rng.IntN(len(awkward))] }
	for i := range 5000 {
		r := Record{
			Time: times[rng.IntN(len(times))], SPIFFEID: pick(), Serial: pick(), Method: pick(), Target: pick(),
			Decision: pick(), Source: pick(), LatencyUS: latencies[rng.IntN(len(latencies))],
			Roles: []string{}, Policies: []string{},
		}
		for range rng.IntN(3) {
			r.Roles = append(r.Roles, pick())
			r.Policies = append(r.Policies, pick())
		}
		if i%3 == 0 {
			r.Args = map[string]any{pick(): pick(), "n": float64(i), "nested": map[string]any{"k": []any{pick(), true, nil}}}
		}
		if i%7 == 0 {
			r.Args = map[string]any{} // empty: omitted
		}
		checkSameEncoding(t, &r)
	}
}

func TestAppendRecordFieldsRefusesWhatJSONCannotHold(t *testing.T) {
	for name, r := range map[string]Record{
		"NaN latency":      {Time: auditT0, LatencyUS: math.NaN()},
		"infinite latency": {Time: auditT0, LatencyUS: math.Inf(1)},
		"year 10000":       {Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"year -1":          {Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		"unencodable args": {Time: auditT0, Args: map[string]any{"f": math.Inf(-1)}},
	} {
		if _, err := encodeFields(&r); err == nil {
			t.Errorf("%s: encoded without an error", name)
		}
		if err := New(&bytes.Buffer{}, WithArguments()).Write(r); err == nil || !strings.Contains(err.Error(), "encoding audit record") {
			t.Errorf("%s: Write returned %v, want an encoding error", name, err)
		}
	}
}

// FuzzAppendRecordFields checks that any strings a client can put in a
// record (a tool name, a URI, arguments) encode as encoding/json encodes
// them, so every line stays valid JSON that reads back to the same values.
func FuzzAppendRecordFields(f *testing.F) {
	for _, s := range awkward {
		f.Add(s, s, 1.5, auditT0.UnixNano())
	}
	f.Fuzz(func(t *testing.T, target, arg string, latency float64, unixNano int64) {
		r := Record{Time: time.Unix(0, unixNano).UTC(), SPIFFEID: "spiffe://acme.test/client/a", Method: "tools/call", Target: target,
			Decision: "deny", Roles: []string{arg}, Policies: []string{}, LatencyUS: latency, Args: map[string]any{"q": arg}}
		if math.IsNaN(latency) || math.IsInf(latency, 0) {
			if _, err := encodeFields(&r); err == nil {
				t.Fatal("non-finite latency encoded")
			}
			return
		}
		checkSameEncoding(t, &r)
	})
}

func BenchmarkAuditWrite(b *testing.B) {
	l := New(discard{})
	r := auditRecord(1)
	r.Time = auditT0
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Write(r); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
