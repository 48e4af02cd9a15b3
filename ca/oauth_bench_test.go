package ca_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
)

// BenchmarkTokenEndpoint is POST /1.0/oauth/token over HTTPS with mTLS
// (keep-alive, 16 clients, each its own certificate and connection)
// against an in-process CA: client credentials, one resource, an ES256
// JWT bound to the certificate. It reports tokens/s.
//
//	go test -run '^$' -bench TokenEndpoint -benchtime 5s ./ca/
//
// (scripts/bench-oauth.sh runs it with the API key verification benchmark.)
func BenchmarkTokenEndpoint(b *testing.B) {
	const clients = 16
	c := catest.Start(b, catest.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
	m, err := ca.NewMinter(c.Dir, c.Password, "") // one slow key decryption, not 16
	if err != nil {
		b.Fatal(err)
	}
	hcs := make([]*http.Client, clients)
	for i := range hcs {
		tok, err := m.Token(ca.TokenRequest{Kind: identity.KindClient, Name: fmt.Sprintf("bench-%d", i), Roles: []string{"reader"}, TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		cert, err := c.EnrollToken(tok)
		if err != nil {
			b.Fatal(err)
		}
		hcs[i] = &http.Client{Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: c.Roots, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}},
			MaxIdleConnsPerHost: 1,
		}}
	}
	body := url.Values{"grant_type": {"client_credentials"}, "resource": {testResource}}.Encode()
	post := func(hc *http.Client) error {
		resp, err := hc.Post(c.URL+ca.TokenPath, "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("token endpoint: %s", resp.Status)
		}
		return nil
	}
	for _, hc := range hcs { // warm: one handshake per client
		if err := post(hc); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	// RunParallel starts parallelism x GOMAXPROCS goroutines: 16 or just over.
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((clients + procs - 1) / procs)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		hc := hcs[int(next.Add(1)-1)%clients]
		for pb.Next() {
			if err := post(hc); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
