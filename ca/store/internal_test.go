package store

import (
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func jwt(payload string) string {
	return "eyJhbGciOiJFUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestTokenExpiry(t *testing.T) {
	for _, tc := range []struct {
		tok  string
		want int64 // 0: no expiry
	}{
		{jwt(`{"exp":1800000000}`), 1800000001},
		{jwt(`{"exp":1800000000.5,"sub":"x"}`), 1800000001},
		{jwt(`{"sub":"x"}`), 0},
		{jwt(`{"exp":"soon"}`), 0},
		{jwt(`{"exp":-5}`), 0},
		{jwt(`{"exp":1e300}`), 0},
		{jwt(`not json`), 0},
		{"a.b", 0},
		{"a.b.c.d.e", 0},
		{"a.!!!.c", 0},
		{"", 0},
	} {
		got, ok := tokenExpiry(tc.tok)
		if (tc.want == 0) == ok || (ok && got.Unix() != tc.want) {
			t.Errorf("tokenExpiry(%q) = %v, %v; want %d", tc.tok, got.Unix(), ok, tc.want)
		}
	}
}

func FuzzTokenExpiry(f *testing.F) {
	f.Add(jwt(`{"exp":1800000000}`))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		if exp, ok := tokenExpiry(tok); ok && exp.Unix() <= 0 {
			t.Fatalf("tokenExpiry(%q) = %v", tok, exp)
		}
	})
}

// A write that fails by itself inside a shared transaction fails alone: the
// other writes of the batch are retried and committed.
func TestCommitIsolatesAFailingWrite(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	put := func(k string) *op {
		return &op{done: make(chan struct{}), apply: func(tx *bolt.Tx) error {
			return tx.Bucket(bucketTokens).Put([]byte(k), []byte{0, 0, 0, 0, 0, 0, 0, 0})
		}}
	}
	bad := &op{done: make(chan struct{}), apply: func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).Put([]byte(strings.Repeat("k", bolt.MaxKeySize+1)), nil)
	}}
	batch := []*op{put("one"), bad, put("two")}
	s.commit(batch)
	if batch[0].err != nil || batch[2].err != nil {
		t.Fatalf("good writes failed: %v, %v", batch[0].err, batch[2].err)
	}
	if got := fmt.Sprint(bad.err); got != "key too large" {
		t.Fatalf("bad write error = %q", got)
	}
	for _, k := range []string{"one", "two"} {
		if fresh, err := s.UseToken(k, ""); err != nil || fresh {
			t.Fatalf("UseToken(%s) after the batch = %v, %v; want it stored", k, fresh, err)
		}
	}
}

func TestUseTokenKeyTooLarge(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	id := strings.Repeat("k", bolt.MaxKeySize+1)
	_, err = s.UseToken(id, "")
	if want := "store: storing used token " + id + ": key too large"; fmt.Sprint(err) != want {
		t.Fatalf("err = %.100q..., want %.100q...", fmt.Sprint(err), want)
	}
}
