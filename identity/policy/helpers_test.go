package policy

import (
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
)

var t0 = time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC) // a Wednesday

func ident(t testing.TB, id string, roles []string, attrs map[string]string) *identity.Identity {
	t.Helper()
	sid, err := identity.ParseID(id)
	if err != nil {
		t.Fatal(err)
	}
	if attrs == nil {
		attrs = map[string]string{}
	}
	return &identity.Identity{
		ID: sid, Roles: roles, Attributes: attrs, Serial: big.NewInt(0x1234),
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(23 * time.Hour),
	}
}

func principal(t testing.TB, id string, roles []string, attrs map[string]string) *Principal {
	return NewPrincipal(ident(t, id, roles, attrs))
}

func compileString(t testing.TB, src string, opts ...Option) *Set {
	t.Helper()
	s, err := Compile([]File{{Name: "test.cedar", Data: []byte(src)}}, opts...)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return s
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeRemove(path string) error { return os.Remove(path) }

func fakeNow(t time.Time) *clock.Fake { return clock.NewFake(t) }
