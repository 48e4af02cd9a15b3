package apikey_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/apikey"
)

// BenchmarkVerify is one Verify of a good key against a set of 1000 keys
// held in memory: the per-request cost of an API key (goal: at most 5µs).
//
//	go test -run '^$' -bench Verify -benchmem ./identity/apikey/
func BenchmarkVerify(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	f := newFakeCA(b)
	var entries []apikey.Entry
	var good string
	for i := 0; i < 1000; i++ {
		k, e := newKey(b, fmt.Sprintf("k%d", i), now.Add(time.Hour))
		entries = append(entries, e)
		good = k
	}
	f.publish(now, time.Hour, entries...)
	v, err := apikey.New(f.srv.URL, f.roots(), apikey.WithAudience(resource), apikey.WithClock(clock.NewFake(now)),
		apikey.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	if err := v.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	ctx := apikey.WithSource(context.Background(), "192.0.2.1")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(ctx, good); err != nil {
			b.Fatal(err)
		}
	}
}
