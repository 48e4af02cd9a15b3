// Command bench-issue measures certificate issuance over HTTPS: the same load
// (N pre-minted JWK tokens and P-256 CSRs, C concurrent clients, keep-alive)
// against `mcpca serve` and against upstream step-ca, both on a bbolt file,
// in one run, alternating rounds. It prints certificates/s and p50/p99
// latency of each, and the ratio. Run it through scripts/bench-issue.sh.
package main

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
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/caclient"
)

func main() {
	mcpcaBin := flag.String("mcpca", "bin/mcpca", "mcpca binary")
	stepBin := flag.String("step-ca", "bin/step-ca", "upstream step-ca binary")
	n := flag.Int("n", 2000, "certificates per round")
	c := flag.Int("c", 16, "concurrent clients")
	rounds := flag.Int("rounds", 3, "rounds per CA (alternating)")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	for _, p := range []*string{mcpcaBin, stepBin} {
		if abs, err := filepath.Abs(*p); err == nil {
			*p = abs
		}
	}
	if err := run(*mcpcaBin, *stepBin, *n, *c, *rounds, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench-issue:", err)
		os.Exit(1)
	}
}

type target struct {
	name string
	dir  string
	url  string
	cmd  *exec.Cmd
	pool *x509.CertPool
}

func run(mcpcaBin, stepBin string, n, c, rounds int, keep bool) error {
	work, err := os.MkdirTemp("", "bench-issue-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	}
	pw := filepath.Join(work, "password")
	if err := os.WriteFile(pw, []byte("bench-password\n"), 0o600); err != nil {
		return err
	}
	var targets []*target
	for _, name := range []string{"mcpca", "step-ca"} {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		dir := filepath.Join(work, name)
		if _, err := ca.Init(ca.InitConfig{Dir: dir, Name: "Bench " + name, TrustDomain: "bench.test", Address: addr, Password: []byte("bench-password")}); err != nil {
			return err
		}
		t := &target{name: name, dir: dir, url: "https://" + addr}
		var cmd *exec.Cmd
		if name == "mcpca" {
			cmd = exec.Command(mcpcaBin, "serve", "--dir", dir, "--password-file", pw)
		} else {
			// Upstream step-ca reads the same kind of ca.json; its paths are
			// relative to the CA directory.
			cmd = exec.Command(stepBin, filepath.Join("config", "ca.json"), "--password-file", pw)
			cmd.Dir = dir
		}
		logf, _ := os.Create(filepath.Join(work, name+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", name, err)
		}
		t.cmd = cmd
		defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
		b, err := os.ReadFile(ca.Layout{Dir: dir}.RootCert())
		if err != nil {
			return err
		}
		t.pool = x509.NewCertPool()
		t.pool.AppendCertsFromPEM(b)
		if err := waitReady(t); err != nil {
			return fmt.Errorf("%s not ready: %w (log: %s)", name, err, filepath.Join(work, name+".log"))
		}
		targets = append(targets, t)
	}
	// Warm both up (TLS session set-up, database pages, JIT of nothing but
	// caches) outside the measurement.
	for _, t := range targets {
		jobs, err := prepare(t, 100)
		if err != nil {
			return err
		}
		if _, err := load(t, jobs, c); err != nil {
			return fmt.Errorf("%s warm-up: %w", t.name, err)
		}
	}
	fmt.Printf("issuance over HTTPS: %d certificates per round, %d clients, %d rounds per CA, P-256, bbolt, durable\n", n, c, rounds)
	results := map[string][]stats{}
	for r := 0; r < rounds; r++ {
		for _, t := range targets {
			jobs, err := prepare(t, n)
			if err != nil {
				return err
			}
			s, err := load(t, jobs, c)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			fmt.Printf("  round %d %-8s %8.0f certs/s  p50 %6.2f ms  p99 %6.2f ms  errors %d\n", r+1, t.name, s.rate, ms(s.p50), ms(s.p99), s.errors)
			results[t.name] = append(results[t.name], s)
		}
	}
	// Rounds run back to back, so each round's ratio compares the two CAs
	// under the same machine load: on a noisy machine its median is the
	// steadier figure.
	var tput, p99 []float64
	for r := range results["mcpca"] {
		m, u := results["mcpca"][r], results["step-ca"][r]
		tput = append(tput, m.rate/u.rate)
		p99 = append(p99, float64(m.p99)/float64(u.p99))
	}
	m, u := median(results["mcpca"]), median(results["step-ca"])
	fmt.Printf("median   mcpca    %8.0f certs/s  p50 %6.2f ms  p99 %6.2f ms\n", m.rate, ms(m.p50), ms(m.p99))
	fmt.Printf("median   step-ca  %8.0f certs/s  p50 %6.2f ms  p99 %6.2f ms\n", u.rate, ms(u.p50), ms(u.p99))
	fmt.Printf("ratio mcpca/step-ca: throughput %.2fx, p99 %.2fx\n", m.rate/u.rate, float64(m.p99)/float64(u.p99))
	fmt.Printf("median of per-round ratios: throughput %.2fx, p99 %.2fx\n", medianFloat(tput), medianFloat(p99))
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitReady(t *target) error {
	cl, err := caclient.New(t.url, t.pool)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
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

type job struct{ body []byte }

// prepare mints n tokens and CSRs outside the timed part.
func prepare(t *target, n int) ([]job, error) {
	jobs := make([]job, n)
	m, err := ca.NewMinter(t.dir, []byte("bench-password"), "")
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
		jobs[i] = job{body: body}
	}
	return jobs, nil
}

type stats struct {
	rate     float64
	p50, p99 time.Duration
	errors   int
}

func load(t *target, jobs []job, c int) (stats, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: t.pool}, MaxIdleConnsPerHost: c, MaxConnsPerHost: c}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	lat := make([]time.Duration, len(jobs))
	var next atomic.Int64
	var errs atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				t0 := time.Now()
				resp, err := hc.Post(t.url+"/1.0/sign", "application/json", bytes.NewReader(jobs[i].body))
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
		return stats{}, fmt.Errorf("%d of %d requests failed, first: %s", errs.Load(), len(jobs), e)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return stats{
		rate:   float64(len(jobs)) / elapsed.Seconds(),
		p50:    lat[len(lat)/2],
		p99:    lat[len(lat)*99/100],
		errors: int(errs.Load()),
	}, nil
}

func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func median(s []stats) stats {
	if len(s) == 0 {
		return stats{}
	}
	sort.Slice(s, func(i, j int) bool { return s[i].rate < s[j].rate })
	return s[len(s)/2]
}
