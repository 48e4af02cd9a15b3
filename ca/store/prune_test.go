package store_test

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/ca/store/storetest"
	"github.com/mcpca/mcpca/clock"
)

var start = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func token(exp time.Time) string {
	return "eyJhbGciOiJFUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"exp":%d}`, exp.Unix())) + ".c2ln"
}

func open(t *testing.T, path string, opts ...store.Option) *store.Store {
	t.Helper()
	s, err := store.Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	return s
}

func stats(t *testing.T, s *store.Store) store.Stats {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func use(t *testing.T, s *store.Store, id, tok string, want bool) {
	t.Helper()
	got, err := s.UseToken(id, tok)
	if err != nil || got != want {
		t.Fatalf("UseToken(%s) = %v, %v; want %v", id, got, err, want)
	}
}

// A used token stays refused until TokenGrace after its expiry, then its
// record goes; a token without an expiry is kept forever.
func TestUsedTokensArePrunedAfterExpiry(t *testing.T) {
	clk := clock.NewFake(start)
	s := open(t, filepath.Join(t.TempDir(), "s.db"), store.WithClock(clk))
	use(t, s, "short", token(start.Add(5*time.Minute)), true)
	use(t, s, "long", token(start.Add(time.Hour)), true)
	use(t, s, "forever", "opaque-token", true)

	clk.Set(start.Add(5*time.Minute + store.TokenGrace))
	if err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	// Not yet: the record is due one second later (exp is rounded up).
	use(t, s, "short", token(start.Add(5*time.Minute)), false)

	clk.Advance(2 * time.Second)
	if err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	if got := stats(t, s).Tokens; got != 2 {
		t.Fatalf("%d token records after the short one expired, want 2", got)
	}
	use(t, s, "long", token(start.Add(time.Hour)), false)

	// Ordinary writes prune as they go, without Prune.
	clk.Set(start.Add(24 * time.Hour))
	use(t, s, "later", token(start.Add(25*time.Hour)), true)
	if got := stats(t, s).Tokens; got != 2 {
		t.Fatalf("%d token records after a write a day later, want 2 (forever, later)", got)
	}
	use(t, s, "forever", "opaque-token", false)
}

func TestCertificateRetention(t *testing.T) {
	clk := clock.NewFake(start)
	path := filepath.Join(t.TempDir(), "s.db")
	s := open(t, path, store.WithClock(clk), store.WithCertificateRetention(time.Hour))
	c := storetest.Cert(t)
	if err := s.StoreCertificateChain(storetest.Prov("ops"), c); err != nil {
		t.Fatal(err)
	}
	clk.Set(c.NotAfter.Add(59 * time.Minute))
	if err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetCertificate(c.SerialNumber.String()); err != nil {
		t.Fatalf("certificate pruned before its retention: %v", err)
	}
	clk.Set(c.NotAfter.Add(time.Hour + time.Second))
	if err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetCertificate(c.SerialNumber.String())
	if want := "store: certificate " + c.SerialNumber.String() + ": not found"; fmt.Sprint(err) != want {
		t.Fatalf("GetCertificate after retention: err = %v, want %s", err, want)
	}
	if _, err := s.GetCertificateData(c.SerialNumber.String()); err == nil {
		t.Fatal("provisioner record kept after retention")
	}
}

func TestOpenFailsFastOnALockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	open(t, path)
	_, err := store.Open(path, store.WithOpenTimeout(20*time.Millisecond))
	if want := "store: opening " + path + ": the file is locked by another process (waited 20ms)"; fmt.Sprint(err) != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestOpenRefusesAnotherFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return m.Put([]byte("format"), []byte("mcpca-store-99"))
	}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	_, err = store.Open(path)
	if want := "store: " + path + `: unknown store format "mcpca-store-99" (this mcpca reads "mcpca-store-1")`; fmt.Sprint(err) != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestOpenFailures(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := store.Open(filepath.Join(notDir, "s.db"))
	if want := "store: creating the directory of " + filepath.Join(notDir, "s.db") + ": mkdir " + notDir + ": not a directory"; fmt.Sprint(err) != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = store.Open(garbage)
	if want := "store: opening " + garbage + ": invalid database"; fmt.Sprint(err) != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestClosed(t *testing.T) {
	s, err := store.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreCRL(nil); fmt.Sprint(err) != "store: storing the CRL: no CRL" {
		t.Fatalf("StoreCRL(nil): %v", err)
	}
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	_, e1 := s.UseToken("a", "")
	_, e2 := s.IsRevoked("1")
	_, e3 := s.GetCRL()
	e4 := s.StoreCertificate(storetest.Cert(t))
	_, e5 := s.Stats()
	for i, err := range []error{e1, e2, e3, e4, e5} {
		if !errors.Is(err, store.ErrClosed) || err.Error() != "store: closed" {
			t.Errorf("call %d after Shutdown: err = %v, want store: closed", i+1, err)
		}
	}
}

func TestBadArguments(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "s.db"))
	for _, tc := range []struct {
		err  error
		want string
	}{
		{s.StoreCertificateChain(nil), "store: storing a certificate chain: the chain is empty"},
		{s.StoreRenewedCertificate(nil, storetest.Cert(t)), "store: storing a renewed certificate: missing the old certificate or the chain"},
		{s.StoreCertificate(&x509.Certificate{}), "store: storing a certificate: no certificate or no serial number"},
		{s.Revoke(nil), "store: revoking: no serial number"},
		{s.StoreSSHCertificate(nil), "store: storing an SSH certificate: no certificate"},
	} {
		if fmt.Sprint(tc.err) != tc.want {
			t.Errorf("err = %v, want %s", tc.err, tc.want)
		}
	}
}

func TestCompact(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "s.db"), filepath.Join(dir, "compact.db")
	clk := clock.NewFake(start)
	s := open(t, src, store.WithClock(clk))
	for i := range 500 {
		use(t, s, strconv.Itoa(i), token(start.Add(time.Minute)), true)
	}
	use(t, s, "kept", token(start.Add(time.Hour)), true)
	if err := store.Compact(dst, src); fmt.Sprint(err) != "store: compacting "+src+": the file is in use (stop the CA first)" {
		t.Fatalf("Compact of an open store: %v", err)
	}
	clk.Advance(10 * time.Minute)
	if err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	before := stats(t, s)
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := store.Compact(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := store.Compact(dst, src); fmt.Sprint(err) != "store: compacting into "+dst+": the file exists" {
		t.Fatalf("Compact onto an existing file: %v", err)
	}
	missing := filepath.Join(dir, "missing.db")
	if err := store.Compact(filepath.Join(dir, "x.db"), missing); fmt.Sprint(err) != "store: compacting "+missing+": stat "+missing+": no such file or directory" {
		t.Fatalf("Compact of a missing file: %v", err)
	}
	c := open(t, dst, store.WithClock(clk))
	after := stats(t, c)
	if after.Tokens != 1 || after.FileBytes >= before.FileBytes {
		t.Fatalf("compacted: %+v, before %+v", after, before)
	}
	use(t, c, "kept", token(start.Add(time.Hour)), false)
}

// TestGrowthIsBounded issues with 5-minute tokens and 5-minute
// certificates (kept 5 minutes after expiry) at a steady rate of fake time
// over six record lifetimes: the live records and the file reach a steady
// size. MCPCA_STORE_GROWTH=100000 (make soak) runs the full 100,000.
func TestGrowthIsBounded(t *testing.T) {
	n := 20000
	if v := os.Getenv("MCPCA_STORE_GROWTH"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			t.Fatalf("MCPCA_STORE_GROWTH=%q: want a number of issuances >= 1000", v)
		}
	} else if testing.Short() {
		n = 5000
	}
	const life = 5 * time.Minute
	span := 6 * (life + store.TokenGrace)
	step := span / time.Duration(n)
	clk := clock.NewFake(start)
	s := open(t, filepath.Join(t.TempDir(), "s.db"), store.WithClock(clk), store.WithCertificateRetention(store.TokenGrace))
	tmpl := storetest.Cert(t)
	prov := storetest.Prov("ops")

	var next atomic.Int64
	var mid store.Stats
	var midOnce sync.Once
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				now := start.Add(time.Duration(i) * step)
				clk.Set(now)
				id := strconv.FormatInt(i, 10)
				if ok, err := s.UseToken(id, token(now.Add(life))); err != nil || !ok {
					errs <- fmt.Errorf("UseToken(%s) = %v, %v", id, ok, err)
					return
				}
				c := &x509.Certificate{Raw: tmpl.Raw, SerialNumber: big.NewInt(i + 1), NotAfter: now.Add(life)}
				if err := s.StoreCertificateChain(prov, c); err != nil {
					errs <- err
					return
				}
				if i == int64(n/2) {
					midOnce.Do(func() { mid, _ = s.Stats() })
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	end := stats(t, s)
	// Records live life+grace (+1s rounding); the pruning of each commit may
	// lag by a batch.
	live := int((life+store.TokenGrace+time.Second)/step) + 1024
	t.Logf("%d issuances, step %v: middle %+v, end %+v", n, step, mid, end)
	if end.Tokens > live || end.Certificates > live {
		t.Fatalf("%d token and %d certificate records at the end, want at most %d each", end.Tokens, end.Certificates, live)
	}
	if end.FileBytes > mid.FileBytes*5/4+1<<20 || end.LiveBytes > mid.FileBytes*5/4+1<<20 {
		t.Fatalf("the file grew from %d bytes half-way to %d (live %d) at the end", mid.FileBytes, end.FileBytes, end.LiveBytes)
	}
}

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	use(t, s, "a", token(time.Now().Add(time.Hour)), true)
	use(t, s, "b", "opaque", true)
	if err := s.Check(); err != nil {
		t.Fatalf("Check of a healthy store: %v", err)
	}
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte("token_expiry")).Cursor()
		k, _ := c.First()
		return tx.Bucket([]byte("token_expiry")).Delete(k)
	}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	s = open(t, path)
	if err := s.Check(); fmt.Sprint(err) != "store: "+path+": used token a is missing from the expiry index" {
		t.Fatalf("Check: %v", err)
	}
}
