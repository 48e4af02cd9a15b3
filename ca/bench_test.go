package ca_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/ca/catest"
	"github.com/mcpca/mcpca/identity"
)

// BenchmarkIssueHTTPS is POST /1.0/sign over HTTPS (keep-alive, 16
// clients, P-256) against an in-process CA on each database, with the JSON
// log formatted (to io.Discard). Profile the whole path with
//
//	MCPCA_BENCH_CPUPROFILE=cpu.out go test -run '^$' -bench IssueHTTPS/store -benchtime 4000x ./ca/
//
// (cpu.out.store: the profile covers the timed part only, not the minting
// of tokens).
func BenchmarkIssueHTTPS(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts []ca.Option
	}{
		{"store", nil},
		{"step-ca", []ca.Option{ca.WithStepCADatabase()}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := catest.Start(b, catest.Options{CAOptions: tc.opts, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
			m, err := ca.NewMinter(c.Dir, c.Password, "")
			if err != nil {
				b.Fatal(err)
			}
			bodies := make([][]byte, b.N)
			for i := range bodies {
				tok, err := m.Token(ca.TokenRequest{Kind: identity.KindClient, Name: fmt.Sprintf("c%d", i), Roles: []string{"reader"}, TokenTTL: time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				csr, err := catest.CSRForToken(tok, key)
				if err != nil {
					b.Fatal(err)
				}
				bodies[i], _ = json.Marshal(map[string]string{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw})), "ott": tok})
			}
			const clients = 16
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Roots}, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			var next atomic.Int64
			var failed atomic.Value
			var wg sync.WaitGroup
			if p := os.Getenv("MCPCA_BENCH_CPUPROFILE"); p != "" && b.N > 1 {
				f, err := os.Create(p + "." + tc.name)
				if err != nil {
					b.Fatal(err)
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				defer pprof.StopCPUProfile()
			}
			b.ResetTimer()
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= len(bodies) {
							return
						}
						resp, err := hc.Post(c.URL+"/1.0/sign", "application/json", bytes.NewReader(bodies[i]))
						if err != nil {
							failed.CompareAndSwap(nil, err.Error())
							continue
						}
						msg, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusCreated {
							failed.CompareAndSwap(nil, fmt.Sprintf("HTTP %d: %s", resp.StatusCode, msg))
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if f := failed.Load(); f != nil {
				b.Fatal(f)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
			if st := c.Server.Store(); st != nil {
				if s, err := st.Stats(); err == nil && s.Commits > 0 {
					b.ReportMetric(float64(s.Writes)/float64(s.Commits), "writes/commit")
				}
			}
		})
	}
}
