package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/identity"
)

// stormSources is how many in-process sources renew at once against the
// real `mcpca serve` (MCPCA_STORM_SOURCES overrides it for longer runs:
// make storm).
func stormSources(t *testing.T) int {
	if v := os.Getenv("MCPCA_STORM_SOURCES"); v != "" {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1 {
			t.Fatalf("MCPCA_STORM_SOURCES=%q: want a positive number", v)
		}
		return n
	}
	return 200
}

// A renewal storm: a fleet enrolled at the same moment comes due while the
// CA is down (for longer than a renewal period), then the CA starts while
// they all retry. With admission control (--max-in-flight 4)
// it sheds the excess with 503 and Retry-After, the sources wait as told
// (with jitter) serving their current certificates, and every one of them
// renews long before its certificate expires, with no failure other than
// the CA being down and the 503s.
func TestCLIRenewalStormIsShedAndEveryoneRenews(t *testing.T) {
	n := stormSources(t)
	begin := time.Now()
	work := t.TempDir()
	addr := freeAddr(t)
	ok(t, work, "init", "--dir", "pki", "--name", "Storm CA", "--trust-domain", "acme.test", "--address", addr, "--dns", "localhost")
	dir := filepath.Join(work, "pki")
	serve := func() (stop func()) {
		cmd := exec.Command(mcpcaBin, "serve", "--dir", "pki", "--max-in-flight", "4")
		cmd.Dir = work
		logs := &syncBuf{mu: make(chanMutex, 1)}
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop = func() {
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		t.Cleanup(stop)
		waitFor(t, func() bool { return strings.Contains(logs.String(), `"event":"start"`) }, logs.String)
		return stop
	}
	stop := serve()

	pw, err := os.ReadFile(filepath.Join(dir, "secrets", "password"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ca.NewMinter(dir, []byte(strings.TrimSpace(string(pw))), "")
	if err != nil {
		t.Fatal(err)
	}
	root, err := agent.LoadCertificates(filepath.Join(dir, "certs", "root_ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root[0])
	client := &agent.CAClient{CAURL: "https://" + addr, TrustRoots: func() *x509.CertPool { return pool }}
	certs := make([]tls.Certificate, n)
	for i := range certs {
		tok, err := m.Token(ca.TokenRequest{Kind: identity.KindClient, Name: fmt.Sprintf("agent-%d", i), Roles: []string{"reader"}, TTL: ca.MinTTL})
		if err != nil {
			t.Fatal(err)
		}
		if certs[i], err = client.Enroll(context.Background(), tok); err != nil {
			t.Fatalf("enrolling agent-%d: %v", i, err)
		}
	}
	t.Logf("%d enrolled at %v", n, time.Since(begin))
	stop() // the outage

	logs := &syncBuf{mu: make(chanMutex, 1)}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	sources := make([]*agent.Source, n)
	for i := range sources {
		// Due 3 s after issuance (1% of 5 minutes): the outage below
		// lasts longer than that.
		s, err := agent.NewSource(certs[i], client, agent.WithRenewAt(0.01), agent.WithLogger(logger))
		if err != nil {
			t.Fatal(err)
		}
		sources[i] = s
		wg.Go(func() { _ = s.Run(ctx) })
	}
	// Everyone comes due while the CA is down: each attempt fails and
	// backs off.
	waitFor(t, func() bool {
		for _, s := range sources {
			if s.Status().Failures == 0 {
				return false
			}
		}
		return true
	}, func() string { return "not every source tried while the CA was down" })
	t.Logf("all failed while down at %v", time.Since(begin))
	serve()
	t.Logf("CA back at %v", time.Since(begin))
	renewed := func() int {
		k := 0
		for _, s := range sources {
			if s.Status().Renewals > 0 {
				k++
			}
		}
		return k
	}
	deadline := time.Now().Add(3 * time.Minute)
	for renewed() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sources renewed after the CA came back; logs:\n%s", renewed(), n, tail(logs.String(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var shed, down, other int
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, "renewal failed") {
			continue
		}
		switch {
		case strings.Contains(line, "the CA answered 503: ca: the CA is at its limit of 4 requests in flight (serve --max-in-flight): retry after"):
			shed++
		case strings.Contains(line, "connection refused"):
			down++
		default:
			other++
			t.Errorf("a renewal failed otherwise: %s", line)
		}
	}
	if shed == 0 || down < n {
		t.Fatalf("%d attempts shed, %d refused while down (want some shed and every source tried while down)", shed, down)
	}
	for i, s := range sources {
		if leaf := s.Current().Leaf(); !leaf.NotAfter.After(certs[i].Leaf.NotAfter) {
			t.Fatalf("agent-%d kept its old certificate", i)
		}
	}
	t.Logf("%d sources renewed after the outage; %d attempts shed with 503, %d refused while down", n, shed, down)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
