package trust_test

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

const (
	td     = "example.org"
	alice  = "spiffe://example.org/client/alice"
	server = "spiffe://example.org/server/files"
)

var t0 = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func bundleOf(t testing.TB, cas ...*testca.CA) *trust.Bundle {
	t.Helper()
	var roots []*x509.Certificate
	for _, ca := range cas {
		roots = append(roots, ca.Root())
	}
	b, err := trust.NewBundle(roots)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertErr(t *testing.T, err error, want string, is error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if err.Error() != want {
		t.Fatalf("error\n got: %s\nwant: %s", err, want)
	}
	if is != nil && !errors.Is(err, is) {
		t.Fatalf("errors.Is(%v, %v) = false", err, is)
	}
}
