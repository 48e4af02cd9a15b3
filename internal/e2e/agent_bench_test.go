package e2e_test

import (
	"context"
	"crypto/x509"
	"github.com/mcpca/mcpca/agent"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
)

// BenchmarkRenewalToDiskAndHook measures what follows a renewal falling
// due: the renewal over mTLS against the real CA (embedded step-ca on
// loopback), the atomic write of chain, key and bundle, and a reload hook
// (a process run and waited for).
func BenchmarkRenewalToDiskAndHook(b *testing.B) {
	c := catest.Start(b, catest.Options{})
	cert := c.Enroll(ca.TokenRequest{Kind: identity.KindServer, Name: "web", DNSNames: []string{"localhost"}, TTL: time.Hour})
	dir := b.TempDir()
	sink := &agent.FileSink{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"), BundleFile: filepath.Join(dir, "bundle.pem")}
	var s *agent.Source
	cl := &agent.CAClient{CAURL: c.URL, TrustRoots: func() *x509.CertPool { return s.RootPool() }}
	s, err := agent.NewSource(cert, cl, agent.WithRoots([]*x509.Certificate{c.Root}), agent.WithBundle(cl, 0), agent.WithStore(sink), agent.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	hooks := agent.NewHooks(quiet, &agent.Command{Argv: []string{"true"}})
	done := make(chan struct{}, 1)
	s.Subscribe(func(sn *agent.Snapshot) {
		hooks.Notify(sn)
		done <- struct{}{}
	})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { s.Run(ctx); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.RenewNow()
		<-done
	}
	b.StopTimer()
	if hooks.Failures() != 0 {
		b.Fatalf("%d hook failures", hooks.Failures())
	}
}
