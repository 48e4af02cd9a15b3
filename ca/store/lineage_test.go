package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/smallstep/certificates/db"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/pgtest"
)

var testKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

// leafFor returns a self-signed certificate with the serial and SPIFFE ID.
func leafFor(t *testing.T, serial int64, id string, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), URIs: []*url.URL{u}, NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &testKey.PublicKey, testKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// opener opens a fresh store of one backend.
type opener func(t *testing.T, clk clock.Clock, opts ...Option) *Store

// eachBackend runs fn on bbolt and on PostgreSQL (pgtest's cluster).
func eachBackend(t *testing.T, fn func(t *testing.T, openAt opener)) {
	t.Run("bbolt", func(t *testing.T) {
		fn(t, func(t *testing.T, clk clock.Clock, opts ...Option) *Store {
			t.Helper()
			s, err := Open(filepath.Join(t.TempDir(), "mcpca.db"), append([]Option{WithClock(clk)}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Shutdown() })
			return s
		})
	})
	t.Run("postgresql", func(t *testing.T) {
		fn(t, func(t *testing.T, clk clock.Clock, opts ...Option) *Store {
			t.Helper()
			s, err := OpenPostgres(context.Background(), pgtest.DSN(t), append([]Option{WithClock(clk)}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Shutdown() })
			return s
		})
	})
}

func revoked(t *testing.T, s *Store) []string {
	t.Helper()
	l, err := s.GetRevokedCertificates()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range *l {
		out = append(out, r.Serial)
	}
	slices.Sort(out)
	return out
}

func TestRevokeCascadesToRenewals(t *testing.T) {
	eachBackend(t, func(t *testing.T, openAt opener) {
		now := time.Unix(1_800_000_000, 0)
		s := openAt(t, clock.NewFake(now))
		const id = "spiffe://acme.test/client/a"
		c1 := leafFor(t, 1, id, now, now.Add(time.Hour))
		c2 := leafFor(t, 2, id, now, now.Add(time.Hour))
		c3 := leafFor(t, 3, id, now, now.Add(time.Hour))
		c4 := leafFor(t, 4, id, now, now.Add(time.Hour))
		if err := s.StoreCertificateChain(nil, c1); err != nil {
			t.Fatal(err)
		}
		for _, step := range [][2]*x509.Certificate{{c1, c2}, {c2, c3}, {c1, c4}} {
			if err := s.StoreRenewedCertificate(step[0], step[1]); err != nil {
				t.Fatal(err)
			}
		}
		rn, err := s.Renewal("1")
		if err != nil || !rn.RenewedAt.Equal(now) || !slices.Equal(rn.Children, []string{"2", "4"}) || rn.ReplacedBy != "" {
			t.Fatalf("Renewal(1) = %+v %v", rn, err)
		}
		if rn, _ := s.Renewal("3"); !rn.RenewedAt.IsZero() {
			t.Fatalf("Renewal(3) = %+v, want never renewed", rn)
		}
		// 1 renewed again (into 4): 2 and what was renewed from it (3) are
		// replaced by 4, and renew no more; 4 goes on.
		for _, serial := range []string{"2", "3"} {
			if rn, _ := s.Renewal(serial); rn.ReplacedBy != "4" {
				t.Errorf("Renewal(%s).ReplacedBy = %q, want 4", serial, rn.ReplacedBy)
			}
		}
		c6 := leafFor(t, 6, id, now, now.Add(time.Hour))
		var replaced *RenewalRefusedError
		if err := s.StoreRenewedCertificate(c3, c6); !errors.As(err, &replaced) || err.Error() != "store: storing certificate 6: renewal refused: certificate 3 was replaced by 4, a later renewal of the certificate it was renewed from" {
			t.Fatalf("renewing the replaced 3: %v", err)
		}
		if err := s.Revoke(&db.RevokedCertificateInfo{Serial: "2", ReasonCode: 1, Reason: "stolen"}); err != nil {
			t.Fatal(err)
		}
		if got := revoked(t, s); !slices.Equal(got, []string{"2", "3"}) {
			t.Fatalf("revoked %v, want 2 and its renewal 3", got)
		}
		l, _ := s.GetRevokedCertificates()
		for _, r := range *l {
			if r.Serial == "3" && r.Reason != "renewed from revoked certificate 2: stolen" {
				t.Errorf("reason of 3: %q", r.Reason)
			}
		}
		// A renewal of a revoked certificate that raced its revocation is not
		// recorded.
		c5 := leafFor(t, 5, id, now, now.Add(time.Hour))
		err = s.StoreRenewedCertificate(c3, c5)
		var rr *RenewalRefusedError
		if !errors.As(err, &rr) || err.Error() != "store: storing certificate 5: renewal refused: certificate 3 was revoked" {
			t.Fatalf("renewing revoked 3: %v", err)
		}
		if _, err := s.GetCertificate("5"); err == nil {
			t.Fatal("the refused renewal was stored")
		}
		// Superseded leaves the successors alone.
		if err := s.Revoke(&db.RevokedCertificateInfo{Serial: "1", ReasonCode: reasonSuperseded}); err != nil {
			t.Fatal(err)
		}
		if got := revoked(t, s); !slices.Equal(got, []string{"1", "2", "3"}) {
			t.Fatalf("revoked %v, want 4 left alone", got)
		}
	})
}

func TestRevokeIdentityRevokesEveryUnexpiredCertificate(t *testing.T) {
	eachBackend(t, func(t *testing.T, openAt opener) {
		now := time.Unix(1_800_000_000, 0)
		clk := clock.NewFake(now)
		s := openAt(t, clk)
		const id = "spiffe://acme.test/client/a"
		old := leafFor(t, 10, id, now.Add(-3*time.Hour), now.Add(-2*time.Hour)) // expired
		live := leafFor(t, 11, id, now, now.Add(time.Hour))
		gone := leafFor(t, 12, id, now, now.Add(time.Hour))
		other := leafFor(t, 20, "spiffe://acme.test/client/ab", now, now.Add(time.Hour)) // a prefix of nothing
		for _, c := range []*x509.Certificate{old, live, gone, other} {
			if err := s.StoreCertificateChain(nil, c); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Revoke(&db.RevokedCertificateInfo{Serial: "12"}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Minute)
		serials, err := s.RevokeIdentity(IdentityRevocation{ID: id, At: clk.Now(), Reason: "host lost", ReasonCode: 1})
		if err != nil || !slices.Equal(serials, []string{"11"}) {
			t.Fatalf("RevokeIdentity = %v %v, want [11]", serials, err)
		}
		if got := revoked(t, s); !slices.Equal(got, []string{"11", "12"}) {
			t.Fatalf("revoked %v", got)
		}
		rec, err := s.IdentityRevocation(id)
		if err != nil || rec == nil || !rec.At.Equal(clk.Now()) || rec.Reason != "host lost" {
			t.Fatalf("IdentityRevocation = %+v %v", rec, err)
		}
		if rec, err := s.IdentityRevocation("spiffe://acme.test/client/ab"); err != nil || rec != nil {
			t.Fatalf("other identity: %+v %v", rec, err)
		}
		// A certificate of the identity stored before the revocation but not
		// indexed as revoked (say, a renewal of the expired one) does not renew.
		next := leafFor(t, 13, id, clk.Now(), clk.Now().Add(time.Hour))
		if err := s.StoreRenewedCertificate(old, next); err == nil || err.Error() != "store: storing certificate 13: renewal refused: identity "+id+" was revoked at 2027-01-15T08:01:00Z" {
			t.Fatalf("renewing a certificate of the revoked identity: %v", err)
		}
		// Enrolled again after the revocation: renews.
		clk.Advance(time.Second)
		again := leafFor(t, 14, id, clk.Now().Add(-time.Minute), clk.Now().Add(time.Hour)) // backdated, as step-ca does
		if err := s.StoreCertificateChain(nil, again); err != nil {
			t.Fatal(err)
		}
		if err := s.StoreRenewedCertificate(again, leafFor(t, 15, id, clk.Now(), clk.Now().Add(time.Hour))); err != nil {
			t.Fatalf("renewing a certificate enrolled after the revocation: %v", err)
		}
		if got, _ := s.IdentitySerials(id); !slices.Equal(got, []string{"10", "11", "12", "14", "15"}) {
			t.Fatalf("IdentitySerials = %v", got)
		}
	})
}

func TestPruneDropsLineage(t *testing.T) {
	eachBackend(t, func(t *testing.T, openAt opener) {
		now := time.Unix(1_800_000_000, 0)
		clk := clock.NewFake(now)
		s := openAt(t, clk, WithCertificateRetention(time.Hour))
		const id = "spiffe://acme.test/client/a"
		c1 := leafFor(t, 1, id, now, now.Add(time.Hour))
		if err := s.StoreCertificateChain(nil, c1); err != nil {
			t.Fatal(err)
		}
		clk.Advance(3 * time.Hour)
		if err := s.Prune(); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.IdentitySerials(id); len(got) != 0 {
			t.Fatalf("IdentitySerials after prune = %v", got)
		}
		if rn, err := s.Renewal("1"); err != nil || !rn.RenewedAt.IsZero() {
			t.Fatalf("Renewal after prune: %+v %v", rn, err)
		}
	})
}

// A serial is stored once, on either backend.
func TestSerialStoredOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, openAt opener) {
		s := openAt(t, clock.Real{})
		now := time.Now()
		c := leafFor(t, 4242, "spiffe://acme.test/client/a", now.Add(-time.Minute), now.Add(time.Hour))
		if err := s.StoreCertificate(c); err != nil {
			t.Fatal(err)
		}
		other := leafFor(t, 4242, "spiffe://acme.test/client/b", now.Add(-time.Minute), now.Add(time.Hour))
		err := s.StoreCertificate(other)
		if err == nil || err.Error() != "store: storing certificate 4242: a certificate with this serial is already stored" {
			t.Fatalf("second certificate with serial 4242: %v", err)
		}
		got, err := s.GetCertificate("4242")
		if err != nil || !got.Equal(c) {
			t.Fatalf("the first certificate is not the one stored: %v", err)
		}
	})
}
