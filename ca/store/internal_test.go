package store

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/certificates/db"
	bolt "go.etcd.io/bbolt"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

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
		// What step-ca reads as exp (case-sensitive) is the only exp: a
		// case variant or a duplicate cannot schedule an early prune.
		{jwt(`{"exp":1800000000,"EXP":1}`), 0},
		{jwt(`{"EXP":1}`), 0},
		{jwt(`{"exp":1800000000,"exp":1}`), 0},
		{jwt(`{"ſub":"x","exp":1800000000}`), 1800000001},
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
		return &op{done: make(chan struct{}), apply: func(tx kv) error {
			return tx.put(bucketTokens, []byte(k), []byte{0, 0, 0, 0, 0, 0, 0, 0})
		}}
	}
	bad := &op{done: make(chan struct{}), apply: func(tx kv) error {
		return tx.put(bucketTokens, []byte(strings.Repeat("k", bolt.MaxKeySize+1)), nil)
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
	if want := "store: storing used token: the token id has 32769 bytes (1 to 32768)"; fmt.Sprint(err) != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	_, err = s.ClaimToken("", "")
	if want := "store: storing used token: the token id has 0 bytes (1 to 32768)"; fmt.Sprint(err) != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestClaimTokenThenSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if fresh, err := s.ClaimToken("t1", jwt(`{"exp":1800000000}`)); err != nil || !fresh {
		t.Fatalf("ClaimToken = %v, %v", fresh, err)
	}
	if fresh, err := s.ClaimToken("t1", ""); err != nil || fresh {
		t.Fatalf("second ClaimToken = %v, %v; want refused while its record is queued", fresh, err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync with nothing in flight: %v", err)
	}
	if fresh, err := s.UseToken("t1", ""); err != nil || fresh {
		t.Fatalf("UseToken after Sync = %v, %v", fresh, err)
	}
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != ErrClosed {
		t.Fatalf("Sync after Shutdown: %v", err)
	}
	if _, err := s.ClaimToken("t2", ""); err != ErrClosed {
		t.Fatalf("ClaimToken after Shutdown: %v", err)
	}
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	if fresh, err := s.UseToken("t1", ""); err != nil || fresh {
		t.Fatalf("UseToken after reopen = %v, %v", fresh, err)
	}
}

// A claimed token whose record cannot be committed breaks the store: Sync
// and every later write fail, and the token stays refused.
func TestFailedClaimBreaksTheStore(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	s.tokMu.Lock()
	s.pending["lost"] = struct{}{}
	s.tokMu.Unlock()
	if _, err := s.enqueue(func(kv) error { return errors.New("disk on fire") }, s.claimDone("lost"), true); err != nil {
		t.Fatal(err)
	}
	want := "store: the record of used token lost could not be committed (disk on fire): restart the CA"
	if err := s.Sync(); fmt.Sprint(err) != want {
		t.Fatalf("Sync: %v, want %s", err, want)
	}
	if err := s.Err(); fmt.Sprint(err) != want {
		t.Fatalf("Err: %v, want %s", err, want)
	}
	if _, err := s.UseToken("other", ""); fmt.Sprint(err) != want {
		t.Fatalf("UseToken after the failure: %v", err)
	}
	if err := s.StoreCRL(&db.CertificateRevocationListInfo{}); fmt.Sprint(err) != want {
		t.Fatalf("StoreCRL after the failure: %v", err)
	}
	if fresh, err := s.ClaimToken("lost", ""); err != nil || fresh {
		t.Fatalf("ClaimToken of the lost token = %v, %v; want refused", fresh, err)
	}
}

// A claim nobody waits for is held back until a write somebody waits for
// shares its commit, or until claimHold passes.
func TestClaimsShareTheNextCommit(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	s, err := Open(filepath.Join(t.TempDir(), "s.db"), WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	stats := func() Stats {
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if fresh, err := s.ClaimToken("a", ""); err != nil || !fresh {
		t.Fatalf("ClaimToken = %v, %v", fresh, err)
	}
	for {
		changed := clk.Changed()
		if clk.Pending() > 0 {
			break
		}
		<-changed
	}
	if st := stats(); st.Commits != 0 {
		t.Fatalf("the claim was committed alone at once: %+v", st)
	}
	clk.Advance(claimHold)
	for stats().Commits == 0 {
		runtime.Gosched()
	}
	if st := stats(); st.Commits != 1 || st.Writes != 1 {
		t.Fatalf("after claimHold: %+v, want the claim committed", st)
	}
	if _, err := s.ClaimToken("b", ""); err != nil {
		t.Fatal(err)
	}
	if fresh, err := s.UseToken("c", ""); err != nil || !fresh {
		t.Fatalf("UseToken = %v, %v", fresh, err)
	}
	if st := stats(); st.Commits != 2 || st.Writes != 3 {
		t.Fatalf("claim then a waited write: %+v, want one more commit with both", st)
	}
}
