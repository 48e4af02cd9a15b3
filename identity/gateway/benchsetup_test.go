package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/mcpauth"
	"github.com/mcpca/mcpca/identity/policy"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

// BenchSetup is the set-up the gateway's benchmarks share (exported for
// the external test package only: this file is a _test.go file): a test
// CA, a verifier of its trust domain, a policy set read from PolicyFile,
// a Guard, and Caller, alice authenticated with roles reader.
type BenchSetup struct {
	CA         *testca.CA
	Verifier   *identity.Verifier
	PolicyFile string
	Set        *policy.Live
	Guard      *mcpauth.Guard
	Caller     *mcpauth.Caller
}

// NewBenchSetup builds a BenchSetup under the Cedar policy text; alice
// gets the attributes attrs (none when nil).
func NewBenchSetup(b testing.TB, policyText string, attrs map[string]string) *BenchSetup {
	b.Helper()
	s := &BenchSetup{CA: testca.NewCA(b, "acme.test")}
	bundle, err := trust.NewBundle([]*x509.Certificate{s.CA.Root()})
	if err != nil {
		b.Fatal(err)
	}
	if s.Verifier, err = identity.NewVerifier(trust.NewBundleStore(bundle), identity.WithTrustDomains("acme.test")); err != nil {
		b.Fatal(err)
	}
	s.PolicyFile = filepath.Join(b.TempDir(), "policy.cedar")
	if err := os.WriteFile(s.PolicyFile, []byte(policyText), 0o600); err != nil {
		b.Fatal(err)
	}
	if s.Set, err = policy.New([]string{s.PolicyFile}, policy.WithLogger(slog.New(slog.DiscardHandler))); err != nil {
		b.Fatal(err)
	}
	if s.Guard, err = mcpauth.New(s.Verifier, s.Set, mcpauth.WithLogger(slog.New(slog.DiscardHandler))); err != nil {
		b.Fatal(err)
	}
	opts := []testca.SVIDOption{testca.WithRoles("reader")}
	if attrs != nil {
		opts = append(opts, testca.WithAttributes(attrs))
	}
	alice := s.CA.CreateSVID("spiffe://acme.test/client/alice", opts...)
	r := httptest.NewRequest("POST", "https://127.0.0.1/mcp", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: alice.Chain}
	if s.Caller, err = s.Guard.Authenticate(r); err != nil {
		b.Fatal(err)
	}
	return s
}
