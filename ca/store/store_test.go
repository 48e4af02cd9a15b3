package store_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/smallstep/certificates/db"

	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/ca/store/storetest"
	"github.com/mcpca/mcpca/internal/pgtest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string) db.AuthDB {
		s, err := store.Open(filepath.Join(dir, "db", "mcpca.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestConformanceStepCA runs the same suite against step-ca's own bbolt
// driver, the reference for the semantics.
func TestConformanceStepCA(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string) db.AuthDB {
		d, err := db.New(&db.Config{Type: "bbolt", DataSource: filepath.Join(dir, "ca.db")})
		if err != nil {
			t.Fatal(err)
		}
		return d
	})
}

// TestConformancePostgres runs the suite against the PostgreSQL backend,
// on a database of pgtest's cluster per store directory.
func TestConformancePostgres(t *testing.T) {
	c := pgtest.Get(t)
	var mu sync.Mutex
	dbs := map[string]string{}
	storetest.Run(t, func(t *testing.T, dir string) db.AuthDB {
		mu.Lock()
		dsn, ok := dbs[dir]
		if !ok {
			dsn = c.NewDatabase(t)
			dbs[dir] = dsn
		}
		mu.Unlock()
		s, err := store.OpenPostgres(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
