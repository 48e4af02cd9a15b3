// Command bench-storm measures `mcpca serve` under an offered load beyond
// its capacity, with admission control (serve --max-in-flight, the default)
// and without it (--max-in-flight 0), side by side in one run.
//
// First it measures the CA's unloaded capacity: C clients issuing back to
// back (certificates/s and p99). C defaults to the admission bound: the
// CA's issuance is bound by its group commit, so its throughput grows with
// the requests in flight up to the bound (1,268/s at 32 clients, 1,386 to
// 1,513/s at 64 on the 2-core machine); fewer clients measure a CA that
// is not saturated, and more would be shed. Then it offers X times that rate (default
// 2x) open loop for D seconds: requests are sent on schedule whether or not
// earlier ones were answered, as a fleet renewing after an outage does, each
// with a client timeout. It reports goodput (certificates issued per second
// over the run until the last answer), the p99 of the answered requests,
// the 503s with Retry-After, and every other failure (timeouts, resets,
// other statuses), the TLS connections the client opened and the cores the
// CA used in each phase.
//
// The offered load comes from a fleet of -conns connected clients (256 by
// default): a request goes out on schedule on a free connection of theirs,
// or waits for one (the wait counts in its latency). A connection that was
// answered, 503 included, stays open for the next request, as an agent's
// does. With -conns 0 the client dials a new connection whenever none is
// free, so a CA that answers slowly also faces a storm of TLS handshakes,
// which admission control (counted in requests, after the handshake) does
// not bound. Client and CA share this machine's cores: the client's part
// is in the report. Run it through make bench-storm.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcpca/mcpca/ca"
	"github.com/mcpca/mcpca/internal/benchload"
)

func main() {
	mcpcaBin := flag.String("mcpca", "bin/mcpca", "mcpca binary")
	c := flag.Int("c", 0, "clients for the capacity measurement (0: -max-in-flight, or the default bound when that is 0)")
	n := flag.Int("n", 4000, "certificates for the capacity measurement")
	factor := flag.Float64("x", 2, "offered load as a multiple of the capacity")
	dur := flag.Duration("d", 5*time.Second, "how long the load is offered")
	timeout := flag.Duration("timeout", 5*time.Second, "client timeout of each request")
	rounds := flag.Int("rounds", 3, "rounds per configuration (alternating)")
	maxInFlight := flag.Int("max-in-flight", ca.DefaultMaxInFlight, "the bound of the admission-controlled CA")
	conns := flag.Int("conns", 256, "connections the offered load may use (0: a new one whenever none is free)")
	flag.Parse()
	if *c == 0 {
		*c = *maxInFlight
		if *c <= 0 {
			*c = ca.DefaultMaxInFlight
		}
	}
	if *maxInFlight > 0 && *c > *maxInFlight {
		fmt.Fprintf(os.Stderr, "bench-storm: -c %d exceeds -max-in-flight %d: the admission-controlled CA would shed part of the capacity measurement\n", *c, *maxInFlight)
		os.Exit(2)
	}
	if abs, err := filepath.Abs(*mcpcaBin); err == nil {
		*mcpcaBin = abs
	}
	if err := run(*mcpcaBin, *c, *n, *factor, *dur, *timeout, *rounds, *maxInFlight, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "bench-storm:", err)
		os.Exit(1)
	}
}

type target struct {
	name string
	dir  string
	url  string
	pool *x509.CertPool
	pid  int
}

// cpuSeconds is the CPU time the process pid has used so far (Linux).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100 // clock ticks (USER_HZ, 100 on Linux)
}

// cores is the CPU the process pid used while f ran, in cores.
func cores(pid int, f func()) float64 {
	c0, t0 := cpuSeconds(pid), time.Now()
	f()
	return (cpuSeconds(pid) - c0) / time.Since(t0).Seconds()
}

func run(bin string, c, n int, factor float64, dur, timeout time.Duration, rounds, maxInFlight, conns int) error {
	work, err := os.MkdirTemp("", "bench-storm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	pw := filepath.Join(work, "password")
	if err := os.WriteFile(pw, []byte("bench-password\n"), 0o600); err != nil {
		return err
	}
	var targets []*target
	for _, cfg := range []struct {
		name string
		max  int
	}{{fmt.Sprintf("admission (--max-in-flight %d)", maxInFlight), maxInFlight}, {"no admission (--max-in-flight 0)", 0}} {
		addr, err := benchload.FreeAddr()
		if err != nil {
			return err
		}
		dir := filepath.Join(work, strconv.Itoa(len(targets)))
		if _, err := ca.Init(ca.InitConfig{Dir: dir, Name: "Bench", TrustDomain: "bench.test", Address: addr, Password: []byte("bench-password")}); err != nil {
			return err
		}
		cmd := exec.Command(bin, "serve", "--dir", dir, "--password-file", pw, "--max-in-flight", strconv.Itoa(cfg.max))
		logf, _ := os.Create(dir + ".log")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
		b, err := os.ReadFile(ca.Layout{Dir: dir}.RootCert())
		if err != nil {
			return err
		}
		t := &target{name: cfg.name, dir: dir, url: "https://" + addr, pool: x509.NewCertPool(), pid: cmd.Process.Pid}
		t.pool.AppendCertsFromPEM(b)
		if err := benchload.WaitReady(t.url, t.pool); err != nil {
			return fmt.Errorf("%s not ready: %w (log: %s.log)", t.name, err, dir)
		}
		targets = append(targets, t)
	}
	fleet := fmt.Sprintf("from %d connections", conns)
	if conns == 0 {
		fleet = "dialling whenever no connection is free"
	}
	fmt.Printf("overload of mcpca serve: capacity at %d clients (%d certificates), then %.1fx that rate offered open loop for %s %s, client timeout %s, %d rounds each\n",
		c, n, factor, dur, fleet, timeout, rounds)
	type row struct{ capRate, capP99, good, p99, shed, failed, goodFrac, p99Ratio float64 }
	res := map[string][]row{}
	for r := 1; r <= rounds; r++ {
		for _, t := range targets {
			jobs, err := benchload.Prepare(t.dir, []byte("bench-password"), n)
			if err != nil {
				return err
			}
			var capRate float64
			var capP99 time.Duration
			capCores := cores(t.pid, func() { capRate, capP99, err = closedLoop(t, jobs, c) })
			if err != nil {
				return fmt.Errorf("%s capacity: %w", t.name, err)
			}
			rate := capRate * factor
			jobs, err = benchload.Prepare(t.dir, []byte("bench-password"), int(rate*dur.Seconds())+1)
			if err != nil {
				return err
			}
			var o openResult
			openCores := cores(t.pid, func() { o = openLoop(t, jobs, rate, timeout, conns) })
			rw := row{capRate, benchload.MS(capP99), o.goodput, benchload.MS(o.p99), float64(o.shed), float64(o.failed), o.goodput / capRate, float64(o.p99) / float64(capP99)}
			res[t.name] = append(res[t.name], rw)
			fmt.Printf("  round %d %-34s capacity %6.0f/s p99 %6.1f ms (CA %.2f cores) | offered %6.0f/s: goodput %6.0f/s (%3.0f%%) p99 %7.1f ms (%5.1fx) 503 %6d other failures %5d%s (CA %.2f cores, client %.2f, %d connections)\n",
				r, t.name, capRate, benchload.MS(capP99), capCores, rate, o.goodput, 100*rw.goodFrac, benchload.MS(o.p99), rw.p99Ratio, o.shed, o.failed, o.firstFailure, openCores, o.clientCores, o.dials)
		}
	}
	for _, t := range targets {
		rs := res[t.name]
		med := func(f func(row) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		fmt.Printf("median %-34s goodput %3.0f%% of capacity, p99 %5.1fx the unloaded p99, 503 %6.0f, other failures %5.0f\n", t.name,
			100*med(func(r row) float64 { return r.goodFrac }), med(func(r row) float64 { return r.p99Ratio }),
			med(func(r row) float64 { return r.shed }), med(func(r row) float64 { return r.failed }))
	}
	return nil
}

type outcome int

const (
	issued outcome = iota
	shed           // 503 with Retry-After
	failed         // anything else
)

func sign(hc *http.Client, url string, body []byte) (outcome, time.Duration, error) {
	t0 := time.Now()
	resp, err := hc.Post(url+"/1.0/sign", "application/json", bytes.NewReader(body))
	if err != nil {
		return failed, 0, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lat := time.Since(t0)
	switch {
	case resp.StatusCode == http.StatusCreated:
		return issued, lat, nil
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		return shed, lat, nil
	default:
		return failed, lat, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
}

// closedLoop measures the capacity: c clients back to back.
func closedLoop(t *target, jobs []benchload.Job, c int) (float64, time.Duration, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: t.pool}, MaxIdleConnsPerHost: c}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	lat := make([]time.Duration, len(jobs))
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				o, d, err := sign(hc, t.url, jobs[i].Body)
				lat[i] = d
				if o != issued {
					firstErr.CompareAndSwap(nil, fmt.Sprint(o, err))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if e := firstErr.Load(); e != nil {
		return 0, 0, fmt.Errorf("a request failed unloaded: %v", e)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return float64(len(jobs)) / elapsed.Seconds(), lat[len(lat)*99/100], nil
}

type openResult struct {
	dials        int64   // TLS connections opened
	clientCores  float64 // the client's own CPU use
	goodput      float64
	p99          time.Duration
	shed, failed int
	firstFailure string
}

// openLoop sends jobs at rate per second, each in its own goroutine, whether
// or not earlier ones were answered, over at most conns connections (0: no
// bound).
func openLoop(t *target, jobs []benchload.Job, rate float64, timeout time.Duration, conns int) openResult {
	var dials atomic.Int64
	d := &net.Dialer{}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: t.pool}, MaxIdleConnsPerHost: 4096, MaxConnsPerHost: conns,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: timeout}
	var mu sync.Mutex
	var lat []time.Duration
	var res openResult
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	for i, job := range jobs {
		body := job.Body
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		wg.Go(func() {
			o, d, err := sign(hc, t.url, body)
			mu.Lock()
			defer mu.Unlock()
			switch o {
			case issued:
				lat = append(lat, d)
			case shed:
				res.shed++
			default:
				res.failed++
				if res.firstFailure == "" {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						res.firstFailure = " (first: timeout after " + timeout.String() + ")"
					} else {
						res.firstFailure = fmt.Sprintf(" (first: %.80v)", err)
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := func(ru syscall.Rusage) time.Duration {
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	res.clientCores = (cpu(ru1) - cpu(ru0)).Seconds() / elapsed.Seconds()
	res.dials = dials.Load()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.goodput = float64(len(lat)) / elapsed.Seconds()
	if len(lat) > 0 {
		res.p99 = lat[len(lat)*99/100]
	}
	return res
}
