// Package benchload is the issuance load of the benchmark programs
// (scripts/bench-issue, scripts/bench-replicas): pre-minted JWK tokens and
// P-256 CSRs posted to /1.0/sign by C concurrent keep-alive clients, timed.
package benchload

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/caclient"
)

// Job is one prepared request body.
type Job struct{ Body []byte }

// Stats is one timed load.
type Stats struct {
	Rate     float64 // certificates/s
	P50, P99 time.Duration
	Errors   int
}

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitReady waits until the CA at url answers /roots.
func WaitReady(url string, pool *x509.CertPool) error {
	cl, err := caclient.New(url, pool)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cl.Roots(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Prepare mints n tokens of the CA in dir and their CSRs, outside the
// timed part.
func Prepare(dir string, password []byte, n int) ([]Job, error) {
	jobs := make([]Job, n)
	m, err := ca.NewMinter(dir, password, "")
	if err != nil {
		return nil, err
	}
	for i := range jobs {
		tok, err := m.Token(ca.TokenRequest{Kind: identity.KindClient, Name: fmt.Sprintf("c%d", i), Roles: []string{"reader"}, TokenTTL: time.Hour})
		if err != nil {
			return nil, err
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		csr, err := caclient.CSRForToken(tok, key)
		if err != nil {
			return nil, err
		}
		body, _ := json.Marshal(map[string]string{"csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr.Raw})), "ott": tok})
		jobs[i] = Job{Body: body}
	}
	return jobs, nil
}

// Load posts every job with c clients, client i to urls[i%len(urls)], and
// times it. It fails when more than 1% of the requests fail.
func Load(urls []string, pool *x509.CertPool, jobs []Job, c int) (Stats, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: c, MaxConnsPerHost: c}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	lat := make([]time.Duration, len(jobs))
	var next atomic.Int64
	var errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		url := urls[w%len(urls)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				t0 := time.Now()
				resp, err := hc.Post(url+"/1.0/sign", "application/json", bytes.NewReader(jobs[i].Body))
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
					}
				}
				lat[i] = time.Since(t0)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if e := firstErr.Load(); e != nil && errs.Load() > int64(len(jobs)/100) {
		return Stats{}, fmt.Errorf("%d of %d requests failed, first: %s", errs.Load(), len(jobs), e)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return Stats{
		Rate:   float64(len(jobs)) / elapsed.Seconds(),
		P50:    lat[len(lat)/2],
		P99:    lat[len(lat)*99/100],
		Errors: int(errs.Load()),
	}, nil
}

// MedianFloat is the median of v (sorted in place).
func MedianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

// Median is the load of median throughput.
func Median(s []Stats) Stats {
	if len(s) == 0 {
		return Stats{}
	}
	c := append([]Stats(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i].Rate < c[j].Rate })
	return c[len(c)/2]
}

// MS is d in milliseconds.
func MS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
