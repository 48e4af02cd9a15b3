// Command bench-replicas measures certificate issuance over HTTPS (the load
// of scripts/bench-issue: pre-minted tokens and P-256 CSRs, C keep-alive
// clients) against three set-ups in one run, alternating rounds: one
// `mcpca serve` on bbolt, one on PostgreSQL, and two replicas on one
// PostgreSQL database with the clients spread over both. PostgreSQL is a
// throwaway cluster of its own (internal/pgtest; fsync and
// synchronous_commit on). It prints certificates/s, p50/p99 latency, CPU
// per certificate of the CA processes and of PostgreSQL, and the
// PostgreSQL round trips and commits per issuance (from the CA's store
// counters, logged at stop). Run it through scripts/bench-replicas.sh.
package main

import (
	"bufio"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/internal/benchload"
	"github.com/mcpca/mcpca/internal/pgtest"
)

const password = "bench-password"

func main() {
	mcpcaBin := flag.String("mcpca", "bin/mcpca", "mcpca binary")
	n := flag.Int("n", 1000, "certificates per round")
	c := flag.Int("c", 16, "concurrent clients")
	rounds := flag.Int("rounds", 3, "rounds per set-up (alternating)")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	if abs, err := filepath.Abs(*mcpcaBin); err == nil {
		*mcpcaBin = abs
	}
	if err := run(*mcpcaBin, *n, *c, *rounds, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench-replicas:", err)
		os.Exit(1)
	}
}

// proc is one `mcpca serve`.
type proc struct {
	cmd *exec.Cmd
	log string
	url string
}

// setup is one measured configuration: one CA served by procs.
type setup struct {
	name   string
	dir    string // the CA directory tokens are minted from
	pool   *x509.CertPool
	procs  []*proc
	issued int // certificates requested, warm-up included
}

func (s *setup) urls() []string {
	var u []string
	for _, p := range s.procs {
		u = append(u, p.url)
	}
	return u
}

func run(mcpcaBin string, n, c, rounds int, keep bool) error {
	work, err := os.MkdirTemp("", "bench-replicas-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	}
	pw := filepath.Join(work, "password")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	cluster, err := pgtest.StartCluster()
	if err != nil {
		return fmt.Errorf("starting PostgreSQL: %w", err)
	}
	defer cluster.Remove()
	defer cluster.Stop() //nolint:errcheck // best effort at exit
	var setups []*setup
	var all []*proc
	defer func() {
		for _, p := range all {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Signal(os.Interrupt)
				_ = p.cmd.Wait()
			}
		}
	}()
	for _, sp := range []struct {
		name     string
		replicas int
		pg       bool
	}{{"bbolt x1", 1, false}, {"postgresql x1", 1, true}, {"postgresql x2", 2, true}} {
		public, err := benchload.FreeAddr()
		if err != nil {
			return err
		}
		dir := filepath.Join(work, strings.ReplaceAll(sp.name, " ", "-"))
		if _, err := ca.Init(ca.InitConfig{Dir: dir + "-1", Name: "Bench " + sp.name, TrustDomain: "bench.test", Address: public, Password: []byte(password)}); err != nil {
			return err
		}
		s := &setup{name: sp.name, dir: dir + "-1"}
		var dbFile string
		if sp.pg {
			dsn, err := cluster.CreateDatabase()
			if err != nil {
				return err
			}
			dbFile = filepath.Join(work, strings.ReplaceAll(sp.name, " ", "-")+".url")
			if err := os.WriteFile(dbFile, []byte(dsn+"\n"), 0o600); err != nil {
				return err
			}
		}
		for i := 1; i <= sp.replicas; i++ {
			rdir := fmt.Sprintf("%s-%d", dir, i)
			if i > 1 {
				if out, err := exec.Command("cp", "-a", s.dir, rdir).CombinedOutput(); err != nil {
					return fmt.Errorf("copying the CA directory: %v %s", err, out)
				}
			}
			addr, err := benchload.FreeAddr()
			if err != nil {
				return err
			}
			args := []string{"serve", "--dir", rdir, "--password-file", pw, "--address", addr}
			if sp.pg {
				args = append(args, "--database-file", dbFile)
			}
			p := &proc{cmd: exec.Command(mcpcaBin, args...), log: rdir + ".log", url: "https://" + addr}
			logf, err := os.Create(p.log)
			if err != nil {
				return err
			}
			p.cmd.Stdout, p.cmd.Stderr = logf, logf
			if err := p.cmd.Start(); err != nil {
				return err
			}
			s.procs = append(s.procs, p)
			all = append(all, p)
		}
		b, err := os.ReadFile(ca.Layout{Dir: s.dir}.RootCert())
		if err != nil {
			return err
		}
		s.pool = x509.NewCertPool()
		s.pool.AppendCertsFromPEM(b)
		for _, p := range s.procs {
			if err := benchload.WaitReady(p.url, s.pool); err != nil {
				return fmt.Errorf("%s not ready: %w (log: %s)", sp.name, err, p.log)
			}
		}
		setups = append(setups, s)
	}
	for _, s := range setups {
		jobs, err := benchload.Prepare(s.dir, []byte(password), 100)
		if err != nil {
			return err
		}
		if _, err := benchload.Load(s.urls(), s.pool, jobs, c); err != nil {
			return fmt.Errorf("%s warm-up: %w", s.name, err)
		}
		s.issued += len(jobs)
	}
	fmt.Printf("issuance over HTTPS: %d certificates per round, %d clients, %d rounds per set-up, P-256, durable (bbolt fsync; PostgreSQL %s fsync on)\n",
		n, c, rounds, pgVersion(cluster))
	results := map[string][]benchload.Stats{}
	caCPU := map[string]float64{} // seconds during the timed rounds
	pgCPU := map[string]float64{}
	for r := 0; r < rounds; r++ {
		for _, s := range setups {
			jobs, err := benchload.Prepare(s.dir, []byte(password), n)
			if err != nil {
				return err
			}
			ca0, pg0 := s.cpu(), treeCPU(cluster.PID())
			st, err := benchload.Load(s.urls(), s.pool, jobs, c)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			caCPU[s.name] += s.cpu() - ca0
			pgCPU[s.name] += treeCPU(cluster.PID()) - pg0
			s.issued += len(jobs)
			fmt.Printf("  round %d %-14s %7.0f certs/s  p50 %6.2f ms  p99 %6.2f ms  errors %d\n", r+1, s.name, st.Rate, benchload.MS(st.P50), benchload.MS(st.P99), st.Errors)
			results[s.name] = append(results[s.name], st)
		}
	}
	// Stop the CAs: each logs its store counters as it closes.
	for _, p := range all {
		_ = p.cmd.Process.Signal(os.Interrupt)
		_ = p.cmd.Wait()
	}
	fmt.Printf("\n%-14s %9s %9s %9s %11s %11s %9s %9s\n", "set-up", "certs/s", "p50 ms", "p99 ms", "CA CPU/cert", "PG CPU/cert", "RT/cert", "commits/cert")
	for _, s := range setups {
		m := benchload.Median(results[s.name])
		timed := float64(rounds * n)
		var commits, rts int64
		for _, p := range s.procs {
			c, r, err := storeCounters(p.log)
			if err != nil {
				return err
			}
			commits += c
			rts += r
		}
		rt := "-"
		if rts > 0 {
			rt = fmt.Sprintf("%.2f", float64(rts)/float64(s.issued))
		}
		fmt.Printf("%-14s %9.0f %9.2f %9.2f %9.2fms %9.2fms %9s %9.2f\n", s.name, m.Rate, benchload.MS(m.P50), benchload.MS(m.P99),
			1000*caCPU[s.name]/timed, 1000*pgCPU[s.name]/timed, rt, float64(commits)/float64(s.issued))
	}
	var r1, r2 []float64
	for r := 0; r < rounds; r++ {
		b := results["bbolt x1"][r].Rate
		r1 = append(r1, results["postgresql x1"][r].Rate/b)
		r2 = append(r2, results["postgresql x2"][r].Rate/b)
	}
	fmt.Printf("median of per-round ratios to bbolt x1: postgresql x1 %.2fx, postgresql x2 %.2fx\n", benchload.MedianFloat(r1), benchload.MedianFloat(r2))
	return nil
}

// cpu is the CPU time (user+system, seconds) of the set-up's processes.
func (s *setup) cpu() float64 {
	var t float64
	for _, p := range s.procs {
		t += procCPU(p.cmd.Process.Pid)
	}
	return t
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// procCPU reads utime+stime of pid from /proc (0 when it cannot).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	sy, _ := strconv.ParseFloat(f[12], 64)
	return (u + sy) / clockTicks
}

// treeCPU is the CPU time of pid and its children (PostgreSQL's server and
// its backends).
func treeCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	t := procCPU(pid)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			t += procCPU(child)
		}
	}
	return t
}

// storeCounters reads the "store closing" line of a serve log.
func storeCounters(log string) (commits, roundTrips int64, err error) {
	f, err := os.Open(log)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg        string `json:"msg"`
			Commits    int64  `json:"commits"`
			RoundTrips int64  `json:"round_trips"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "store closing" {
			return rec.Commits, rec.RoundTrips, nil
		}
	}
	return 0, 0, fmt.Errorf("%s has no store counters (did serve stop cleanly?)", log)
}

func pgVersion(c *pgtest.Cluster) string {
	b, err := os.ReadFile(filepath.Join(c.Dir(), "data", "PG_VERSION"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
