// Command bench-issue measures certificate issuance over HTTPS: the same load
// (N pre-minted JWK tokens and P-256 CSRs, C concurrent clients, keep-alive)
// against `mcpca serve` and against upstream step-ca, both on a bbolt file,
// in one run, alternating rounds. It prints certificates/s and p50/p99
// latency of each, and the ratio. Run it through scripts/bench-issue.sh.
package main

import (
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/internal/benchload"
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
		addr, err := benchload.FreeAddr()
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
		if err := benchload.WaitReady(t.url, t.pool); err != nil {
			return fmt.Errorf("%s not ready: %w (log: %s)", name, err, filepath.Join(work, name+".log"))
		}
		targets = append(targets, t)
	}
	// Warm both up (TLS session set-up, database pages, JIT of nothing but
	// caches) outside the measurement.
	for _, t := range targets {
		jobs, err := benchload.Prepare(t.dir, []byte("bench-password"), 100)
		if err != nil {
			return err
		}
		if _, err := benchload.Load([]string{t.url}, t.pool, jobs, c); err != nil {
			return fmt.Errorf("%s warm-up: %w", t.name, err)
		}
	}
	fmt.Printf("issuance over HTTPS: %d certificates per round, %d clients, %d rounds per CA, P-256, bbolt, durable\n", n, c, rounds)
	results := map[string][]benchload.Stats{}
	for r := 0; r < rounds; r++ {
		for _, t := range targets {
			jobs, err := benchload.Prepare(t.dir, []byte("bench-password"), n)
			if err != nil {
				return err
			}
			s, err := benchload.Load([]string{t.url}, t.pool, jobs, c)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			fmt.Printf("  round %d %-8s %8.0f certs/s  p50 %6.2f ms  p99 %6.2f ms  errors %d\n", r+1, t.name, s.Rate, ms(s.P50), ms(s.P99), s.Errors)
			results[t.name] = append(results[t.name], s)
		}
	}
	// Rounds run back to back, so each round's ratio compares the two CAs
	// under the same machine load: on a noisy machine its median is the
	// steadier figure.
	var tput, p99 []float64
	for r := range results["mcpca"] {
		m, u := results["mcpca"][r], results["step-ca"][r]
		tput = append(tput, m.Rate/u.Rate)
		p99 = append(p99, float64(m.P99)/float64(u.P99))
	}
	m, u := benchload.Median(results["mcpca"]), benchload.Median(results["step-ca"])
	fmt.Printf("median   mcpca    %8.0f certs/s  p50 %6.2f ms  p99 %6.2f ms\n", m.Rate, ms(m.P50), ms(m.P99))
	fmt.Printf("median   step-ca  %8.0f certs/s  p50 %6.2f ms  p99 %6.2f ms\n", u.Rate, ms(u.P50), ms(u.P99))
	fmt.Printf("ratio mcpca/step-ca: throughput %.2fx, p99 %.2fx\n", m.Rate/u.Rate, float64(m.P99)/float64(u.P99))
	fmt.Printf("median of per-round ratios: throughput %.2fx, p99 %.2fx\n", benchload.MedianFloat(tput), benchload.MedianFloat(p99))
	return nil
}

var ms = benchload.MS
