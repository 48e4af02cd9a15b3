package trust_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

// A server fed by `mcpca agent` picks up each renewal from the files, and a
// pair that does not load keeps the previous one served.
func TestFileCertificateSource(t *testing.T) {
	ca := testca.NewCA(t, td)
	dir := t.TempDir()
	first := ca.CreateSVID(server)
	certFile, keyFile := first.WriteFiles(t, dir)
	clk := clock.NewFake(time.Now())
	refreshed := make(chan error, 10)
	src, err := trust.NewFileCertificateSource(certFile, keyFile, trust.WithClock(clk), trust.WithRefreshInterval(time.Minute),
		trust.WithLogger(slog.New(slog.DiscardHandler)), trust.WithOnRefresh(func(err error) { refreshed <- err }))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := src.GetCertificate(nil); !got.Leaf.Equal(first.Leaf) {
		t.Fatal("not serving the files' certificate")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-refreshed // the first load at start

	// A renewal written by the agent: picked up at the next interval.
	second := ca.CreateSVID(server)
	second.WriteFiles(t, dir)
	clk.Advance(time.Minute)
	if err := <-refreshed; err != nil {
		t.Fatal(err)
	}
	if got, _ := src.GetClientCertificate(nil); !got.Leaf.Equal(second.Leaf) {
		t.Fatal("the renewal was not picked up")
	}
	// A half-written renewal (the new chain, the old key) is refused.
	third := ca.CreateSVID(server)
	if err := os.WriteFile(certFile, third.ChainPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if err := <-refreshed; err == nil || !strings.HasPrefix(err.Error(), "trust: loading "+certFile+" and "+keyFile+": ") {
		t.Fatalf("mismatched pair: %v", err)
	}
	if !src.Current().Leaf.Equal(second.Leaf) {
		t.Fatal("a pair that does not load replaced the served one")
	}
	if _, err := trust.NewFileCertificateSource(dir+"/missing.pem", keyFile); err == nil || !strings.HasPrefix(err.Error(), "trust: reading the certificate: open ") {
		t.Fatalf("missing file: %v", err)
	}
}
