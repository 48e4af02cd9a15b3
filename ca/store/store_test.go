package store_test

import (
	"path/filepath"
	"testing"

	"github.com/smallstep/certificates/db"

	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/ca/store/storetest"
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
