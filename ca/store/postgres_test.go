package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/smallstep/certificates/db"

	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/ca/store/storetest"
	"github.com/mcpca/mcpca/internal/pgtest"
)

func openPG(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.OpenPostgres(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	return s
}

// Two replicas (two stores on one database) redeem the same tokens at
// once: each token has exactly one winner.
func TestPostgresTokenOneWinnerAcrossReplicas(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := openPG(t, dsn), openPG(t, dsn)
	const tokens = 50
	var mu sync.Mutex
	wins := map[string]int{}
	var wg sync.WaitGroup
	for _, s := range []*store.Store{a, b, a, b} {
		for i := range tokens {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("tok-%d", i)
				ok, err := s.UseToken(id, token(nowPlusHour()))
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					wins[id]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for i := range tokens {
		if n := wins[fmt.Sprintf("tok-%d", i)]; n != 1 {
			t.Errorf("token %d redeemed %d times across the replicas", i, n)
		}
	}
}

// An issuance costs at most 2 round trips (the token's insert, the
// certificate's): each a whole transaction, BEGIN to COMMIT, pipelined.
func TestPostgresRoundTripsPerIssuance(t *testing.T) {
	s := openPG(t, pgtest.DSN(t))
	const n = 20
	before := s.RoundTrips()
	for i := range n {
		if ok, err := s.UseToken(fmt.Sprintf("rt-%d", i), token(nowPlusHour())); err != nil || !ok {
			t.Fatalf("UseToken: %v %v", ok, err)
		}
		if err := s.StoreCertificateChain(storetest.Prov("p"), storetest.Cert(t)); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.RoundTrips() - before; got > 2*n {
		t.Fatalf("%d round trips for %d issuances, want at most %d", got, n, 2*n)
	}
}

// A CRL whose number is not above the stored one (another replica stored
// one meanwhile) is refused, and the stored one stays.
func TestPostgresCRLNumberNeverGoesBack(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := openPG(t, dsn), openPG(t, dsn)
	if err := a.StoreCRL(&db.CertificateRevocationListInfo{Number: 5, DER: []byte("five")}); err != nil {
		t.Fatal(err)
	}
	err := b.StoreCRL(&db.CertificateRevocationListInfo{Number: 5, DER: []byte("other five")})
	var ne *store.CRLNumberError
	if !errors.As(err, &ne) || !strings.Contains(err.Error(), "its number 5 is not above the stored CRL's 5 (another CA replica stored one meanwhile)") {
		t.Fatalf("second CRL 5: %v", err)
	}
	got, err := b.GetCRL()
	if err != nil || string(got.DER) != "five" {
		t.Fatalf("GetCRL at the other replica: %v %v", got, err)
	}
	if err := b.StoreCRL(&db.CertificateRevocationListInfo{Number: 6, DER: []byte("six")}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.GetCRL(); err != nil || got.Number != 6 {
		t.Fatalf("GetCRL after the other replica's 6: %v %v", got, err)
	}
}

// Replicas starting at once on an empty database make one schema, without
// error; migrating again changes nothing.
func TestPostgresConcurrentMigrations(t *testing.T) {
	dsn := pgtest.DSN(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := store.OpenPostgres(context.Background(), dsn)
			if err == nil {
				err = s.Shutdown()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	before, after, err := store.Migrate(context.Background(), dsn)
	if err != nil || before != store.SchemaVersion || after != store.SchemaVersion {
		t.Fatalf("Migrate again: %d -> %d, %v", before, after, err)
	}
	s := openPG(t, dsn)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// An unreachable database fails operations with UnavailableError, and the
// store recovers by itself once it is back.
func TestPostgresUnavailableThenRecovers(t *testing.T) {
	c := pgtest.Get(t)
	s := openPG(t, c.NewDatabase(t))
	if err := s.StoreCertificate(storetest.Cert(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = c.Start()
		}
	})
	err := s.StoreCertificate(storetest.Cert(t))
	var ue *store.UnavailableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "the database is unreachable") {
		t.Fatalf("write while PostgreSQL is down: %v", err)
	}
	if s.Unavailable() == nil || s.Ping(context.Background()) == nil {
		t.Fatal("the store does not report the database as unreachable")
	}
	if _, err := s.UseToken("down", token(nowPlusHour())); !errors.As(err, &ue) {
		t.Fatalf("UseToken while PostgreSQL is down: %v", err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Unavailable() != nil {
		t.Fatal("still unavailable after a successful ping")
	}
	crt := storetest.Cert(t)
	if err := s.StoreCertificate(crt); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetCertificate(crt.SerialNumber.String()); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.UseToken("down", token(nowPlusHour())); err != nil || !ok {
		t.Fatalf("the token refused while down was not redeemable afterwards: %v %v", ok, err)
	}
}

func nowPlusHour() time.Time { return time.Now().Add(time.Hour) }

// A schema newer than this mcpca's is refused, naming both versions.
func TestPostgresNewerSchemaRefused(t *testing.T) {
	dsn := pgtest.DSN(t)
	s := openPG(t, dsn)
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), "INSERT INTO mcpca_schema_version (version) VALUES (99)"); err != nil {
		t.Fatal(err)
	}
	_, err = store.OpenPostgres(context.Background(), dsn)
	want := fmt.Sprintf("store: the database's schema is version 99, newer than this mcpca's %d: upgrade mcpca", store.SchemaVersion)
	if err == nil || err.Error() != want {
		t.Fatalf("OpenPostgres on a newer schema: %v, want %s", err, want)
	}
}
