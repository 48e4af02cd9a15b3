package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/internal/pgtest"
)

// testAPIKeys is the API key conformance of a backend: create, a name in
// force refused, list (sorted, every field kept), revoke once, the name
// free again after its revocation and after its expiry, the generation
// moving with every write, and all of it across a reopen.
func testAPIKeys(t *testing.T, open func() *store.Store) {
	s := open()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	k := func(name string, created time.Time, ttl time.Duration) store.APIKey {
		return store.APIKey{Name: name, Hash: "h-" + name, Roles: []string{"reader"}, Attributes: map[string]string{"team": "a"},
			Audience: "https://mcp.acme.test/mcp", CreatedAt: created, ExpiresAt: created.Add(ttl), Provisioner: "admin"}
	}
	gen := s.APIKeysGeneration()
	for _, name := range []string{"zeta", "ci-bot"} {
		if err := s.CreateAPIKey(k(name, t0, time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if s.APIKeysGeneration() == gen {
		t.Error("the generation did not move with a create")
	}
	if err := s.CreateAPIKey(k("ci-bot", t0.Add(time.Minute), time.Hour)); !errors.Is(err, store.ErrAPIKeyExists) {
		t.Fatalf("a name in force: %v", err)
	}
	keys, err := s.APIKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Name != "ci-bot" || keys[1].Name != "zeta" || keys[0].Hash != "h-ci-bot" ||
		keys[0].Attributes["team"] != "a" || !keys[0].ExpiresAt.Equal(t0.Add(time.Hour)) || keys[0].Provisioner != "admin" || !keys[0].Active(t0) {
		t.Fatalf("listed %+v", keys)
	}

	gen = s.APIKeysGeneration()
	rev, err := s.RevokeAPIKey("ci-bot", t0.Add(2*time.Minute))
	if err != nil || !rev.RevokedAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("revoke: %+v %v", rev, err)
	}
	if s.APIKeysGeneration() == gen {
		t.Error("the generation did not move with a revoke")
	}
	if _, err := s.RevokeAPIKey("ci-bot", t0.Add(3*time.Minute)); !errors.Is(err, store.ErrAPIKeyNotFound) {
		t.Fatalf("revoked twice: %v", err)
	}
	if _, err := s.RevokeAPIKey("never", t0); !errors.Is(err, store.ErrAPIKeyNotFound) {
		t.Fatalf("never created: %v", err)
	}

	// Across a reopen: the revocation holds; the names are free again
	// after a revocation and after an expiry.
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	s = open()
	defer s.Shutdown()
	keys, err = s.APIKeys()
	if err != nil || len(keys) != 2 || keys[0].Active(t0.Add(3*time.Minute)) || keys[0].RevokedAt.IsZero() {
		t.Fatalf("after a reopen: %+v %v", keys, err)
	}
	if err := s.CreateAPIKey(k("ci-bot", t0.Add(4*time.Minute), time.Hour)); err != nil {
		t.Fatalf("the name after its revocation: %v", err)
	}
	if err := s.CreateAPIKey(k("zeta", t0.Add(2*time.Hour), time.Hour)); err != nil {
		t.Fatalf("the name after its expiry: %v", err)
	}
	keys, _ = s.APIKeys()
	if len(keys) != 2 || !keys[0].Active(t0.Add(5*time.Minute)) || !keys[1].CreatedAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("re-created: %+v", keys)
	}
}

func TestAPIKeysBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db", "mcpca.db")
	testAPIKeys(t, func() *store.Store {
		s, err := store.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestAPIKeysPostgres: the same on PostgreSQL (skips without it, fails
// under MCPCA_REQUIRE_POSTGRES=1).
func TestAPIKeysPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	var mu sync.Mutex
	testAPIKeys(t, func() *store.Store {
		mu.Lock()
		defer mu.Unlock()
		s, err := store.OpenPostgres(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		if s.Backend() != "postgresql" {
			t.Fatalf("backend %s", s.Backend())
		}
		return s
	})
}
