// Command bench-gateway measures tools/call round trips against one go-sdk
// upstream (the example server, Streamable HTTP, stateful, in a process of
// its own) three ways in one run: direct over mTLS to the upstream, through
// an mcpca-gateway process (mTLS front, Cedar policy allowing the tool,
// audit log on) and through an nginx process configured as a plain mTLS
// reverse proxy (ssl_verify_client on with the same root, proxy_pass,
// proxy_buffering off, HTTP/1.1 keepalive upstream, no policy). Variants
// are called in rotation, round after round, so machine drift hits all
// three alike; it prints medians over rounds and the median of per-round
// ratios. Then the gateway's resident memory, idle and with N initialized
// client sessions open (one TLS connection and one identity each).
// Run it through scripts/bench-gateway.sh.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/gatewaycmd"
	"github.com/mcpca/mcpca/internal/mcpexample"
	"github.com/mcpca/mcpca/internal/testca"
)

func main() {
	gatewayBin := flag.String("gateway", "bin/mcpca-gateway", "mcpca-gateway binary")
	nginxBin := flag.String("nginx", "nginx", `nginx binary ("" to leave nginx out)`)
	calls := flag.Int("calls", 2000, "sequential calls per variant per round (latency)")
	rounds := flag.Int("rounds", 5, "rounds (each variant once per round, in rotation)")
	conc := flag.Int("c", 16, "concurrent clients (throughput)")
	dur := flag.Duration("duration", 2*time.Second, "length of one variant's throughput run per round")
	sessions := flag.Int("sessions", 1000, "client sessions held open for the memory figure (0: skip)")
	keep := flag.Bool("keep", false, "keep the work directory")
	upstreamDir := flag.String("serve-upstream", "", "internal: run as the upstream MCP server with this directory's certificates")
	cpuProfile := flag.String("gateway-cpuprofile", "", "run the gateway as this program (the same code as mcpca-gateway, in-process) and write its CPU profile here")
	gwArgs := flag.String("gateway-args", "", "extra mcpca-gateway flags, space-separated (e.g. --no-caller-assertion)")
	gwEnv := flag.String("gateway-env", "", "extra environment of the gateway process, space-separated (e.g. GOGC=50 GOMEMLIMIT=60MiB)")
	beforeBin := flag.String("gateway-before", "", "another mcpca-gateway binary (e.g. built from the last commit) measured side by side as the variant \"before\"")
	asGateway := flag.String("as-gateway", "", "internal: run mcpca-gateway with the remaining arguments, writing a CPU profile to this file")
	flag.Parse()
	if *asGateway != "" {
		if err := runGateway(*asGateway, flag.Args()); err != nil {
			fmt.Fprintln(os.Stderr, "mcpca-gateway:", err)
			os.Exit(1)
		}
		return
	}
	if *upstreamDir != "" {
		if err := serveUpstream(*upstreamDir); err != nil {
			fmt.Fprintln(os.Stderr, "bench-gateway upstream:", err)
			os.Exit(1)
		}
		return
	}
	if abs, err := filepath.Abs(*gatewayBin); err == nil {
		*gatewayBin = abs
	}
	if *beforeBin != "" {
		if abs, err := filepath.Abs(*beforeBin); err == nil {
			*beforeBin = abs
		}
	}
	if *nginxBin != "" {
		p, err := exec.LookPath(*nginxBin)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench-gateway: %v: nginx is left out\n", err)
			*nginxBin = ""
		} else {
			*nginxBin = p
		}
	}
	o := opts{beforeBin: *beforeBin, gwArgs: strings.Fields(*gwArgs), gwEnv: strings.Fields(*gwEnv), cpuProfile: *cpuProfile, gatewayBin: *gatewayBin, nginxBin: *nginxBin, calls: *calls, rounds: *rounds, conc: *conc, dur: *dur, sessions: *sessions, keep: *keep}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-gateway:", err)
		os.Exit(1)
	}
}

type opts struct {
	gwArgs, gwEnv        []string
	cpuProfile           string
	gatewayBin, nginxBin string
	beforeBin            string
	calls, rounds, conc  int
	dur                  time.Duration
	sessions             int
	keep                 bool
}

// tb lets internal/testca, which reports through testing.TB, run outside
// a test: it only calls Helper, Fatal and Fatalf.
type tb struct{ testing.TB }

func (tb) Helper()                           {}
func (tb) Fatal(args ...any)                 { log.Fatal(args...) }
func (tb) Fatalf(format string, args ...any) { log.Fatalf(format, args...) }

const benchPolicy = `
@id("list") permit (principal, action == Mcp::Action::"tools/list", resource);
@id("readers") permit (principal in Mcp::Role::"reader", action == Mcp::Action::"tools/call", resource)
  when { ["search_docs", "whoami"].contains(resource.name) };
`

// pki is the test CA's files in the work directory and the client side.
type pki struct {
	dir, cert, key, root string
	tca                  *testca.CA
	verifier             *identity.Verifier
}

func newPKI(dir string) (*pki, error) {
	tca := testca.NewCA(tb{}, "acme.test")
	srv := tca.CreateSVID("spiffe://acme.test/server/gateway", testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	p := &pki{dir: dir, tca: tca, root: filepath.Join(dir, "root.crt")}
	p.cert, p.key = srv.WriteFiles(tb{}, dir)
	if err := os.WriteFile(p.root, tca.RootsPEM(), 0o600); err != nil {
		return nil, err
	}
	b, err := trust.NewBundle([]*x509.Certificate{tca.Root()})
	if err != nil {
		return nil, err
	}
	p.verifier, err = identity.NewVerifier(trust.NewBundleStore(b), identity.WithTrustDomains("acme.test"))
	return p, err
}

func (p *pki) client(name string) *http.Client {
	svid := p.tca.CreateSVID("spiffe://acme.test/client/"+name, testca.WithRoles("reader"))
	tr := &http.Transport{TLSClientConfig: identity.ClientTLSConfig(identity.StaticCertificate{Cert: &svid.TLS}, p.verifier, identity.WithServerName("127.0.0.1")),
		MaxIdleConnsPerHost: 64, IdleConnTimeout: 5 * time.Minute}
	return &http.Client{Transport: tr}
}

// serveUpstream is the upstream process: the example server, stateful, on
// plain HTTP for the proxies and on mTLS (the same handler, the same
// sessions) for the direct variant. It prints its two addresses as one
// JSON line and serves until killed.
func serveUpstream(dir string) error {
	srv := mcpexample.NewServer()
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Logger: slog.New(slog.DiscardHandler)})
	mux := http.NewServeMux()
	mux.Handle("/mcp", h)
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(dir, "root.crt"))
	if err != nil {
		return err
	}
	bundle, err := trust.ParseBundlePEM(b)
	if err != nil {
		return err
	}
	v, err := identity.NewVerifier(trust.NewBundleStore(bundle), identity.WithTrustDomains("acme.test"))
	if err != nil {
		return err
	}
	kp, err := tlsKeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return err
	}
	quiet := log.New(io.Discard, "", 0)
	hs := &http.Server{Handler: mux, ErrorLog: quiet, IdleTimeout: 5 * time.Minute}
	ts := &http.Server{Handler: mux, ErrorLog: quiet, IdleTimeout: 5 * time.Minute, TLSConfig: identity.ServerTLSConfig(identity.StaticCertificate{Cert: kp}, v)}
	go func() { _ = hs.Serve(plain) }()
	go func() { _ = ts.ServeTLS(tlsLn, "", "") }()
	line, _ := json.Marshal(map[string]string{"plain": plain.Addr().String(), "tls": tlsLn.Addr().String()})
	fmt.Println(string(line))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	<-sig
	return nil
}

// process is a child process and its pid.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
}

func (p *process) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// startLine starts cmd and returns the first line of its stream r that
// matches, decoded as JSON.
func startLine(name string, cmd *exec.Cmd, pipe func() (io.ReadCloser, error), match func(map[string]any) bool) (*process, map[string]any, error) {
	r, err := pipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd}
	found := make(chan map[string]any, 1)
	var tail []string
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(r)
		sent := false
		for sc.Scan() {
			var m map[string]any
			if !sent && json.Unmarshal(sc.Bytes(), &m) == nil && match(m) {
				found <- m
				sent = true
				continue
			}
			mu.Lock()
			if len(tail) < 50 {
				tail = append(tail, sc.Text())
			}
			mu.Unlock()
		}
		close(found)
	}()
	select {
	case m, ok := <-found:
		if ok {
			return p, m, nil
		}
	case <-time.After(30 * time.Second):
	}
	p.stop()
	mu.Lock()
	defer mu.Unlock()
	return nil, nil, fmt.Errorf("%s did not start: %s", name, strings.Join(tail, "\n"))
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// runGateway is mcpca-gateway inside this program, under the CPU profiler
// until SIGINT (the gateway drains and returns).
func runGateway(profile string, args []string) error {
	f, err := os.Create(profile)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	// SIGUSR1 writes a heap profile beside the CPU profile.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			runtime.GC()
			if h, err := os.Create(profile + ".heap"); err == nil {
				_ = pprof.WriteHeapProfile(h)
				_ = h.Close()
			}
		}
	}()
	cmd := gatewaycmd.New()
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	err = cmd.Execute()
	pprof.StopCPUProfile()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func startGateway(o opts, p *pki, work, name, upstream string) (*process, string, error) {
	return startGatewayBin(o, o.gatewayBin, p, work, name, upstream)
}

func startGatewayBin(o opts, gatewayBin string, p *pki, work, name, upstream string) (*process, string, error) {
	policyFile := filepath.Join(work, "policy.cedar")
	if err := os.WriteFile(policyFile, []byte(benchPolicy), 0o600); err != nil {
		return nil, "", err
	}
	bin, pre := gatewayBin, []string(nil)
	if o.cpuProfile != "" && gatewayBin == o.gatewayBin {
		self, err := os.Executable()
		if err != nil {
			return nil, "", err
		}
		prof := o.cpuProfile
		if name != "gateway" {
			prof += "." + strings.TrimPrefix(name, "gateway-")
		}
		bin, pre = self, []string{"-as-gateway", prof, "--"}
	}
	cmd := exec.Command(bin, append(pre, "--listen", "127.0.0.1:0", "--cert", p.cert, "--key", p.key, "--root", p.root,
		"--policy", policyFile, "--audit", filepath.Join(work, name+"-audit.log"), "--upstream", upstream,
		"--poll", "1h", "--drain-timeout", "2s", "--idle-timeout", "10m")...)
	cmd.Args = append(cmd.Args, o.gwArgs...)
	cmd.Env = append(os.Environ(), o.gwEnv...)
	proc, line, err := startLine(name, cmd, cmd.StderrPipe, func(m map[string]any) bool { return m["msg"] == "serving" })
	if err != nil {
		return nil, "", err
	}
	return proc, line["addr"].(string), nil
}

const nginxConf = `
worker_processes auto;
%s
pid %[2]s/nginx.pid;
error_log %[2]s/nginx-error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log %[2]s/nginx-access.log;
  client_body_temp_path %[2]s/nginx-body;
  proxy_temp_path %[2]s/nginx-proxy;
  fastcgi_temp_path %[2]s/nginx-fastcgi;
  uwsgi_temp_path %[2]s/nginx-uwsgi;
  scgi_temp_path %[2]s/nginx-scgi;
  keepalive_timeout 600s;
  keepalive_requests 1000000;
  upstream mcp { server %[3]s; keepalive 64; keepalive_requests 1000000; }
  server {
    listen %[4]s ssl;
    ssl_certificate %[5]s;
    ssl_certificate_key %[6]s;
    ssl_client_certificate %[7]s;
    ssl_verify_client on;
    ssl_verify_depth 3;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://mcp;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host; # the go-sdk refuses a non-loopback Host on a loopback listener
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
`

func startNginx(bin string, p *pki, work, upstream string) (*process, string, error) {
	addr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers read the work directory's 0600 key
	}
	conf := filepath.Join(work, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, user, work, upstream, addr, p.cert, p.key, p.root)), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "-p", work, "-c", conf)
	logf := filepath.Join(work, "nginx-stderr.log")
	f, err := os.Create(logf)
	if err != nil {
		return nil, "", err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	proc := &process{name: "nginx", cmd: cmd, log: logf}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return proc, addr, nil
		}
	}
	proc.stop()
	b, _ := os.ReadFile(logf)
	eb, _ := os.ReadFile(filepath.Join(work, "nginx-error.log"))
	return nil, "", fmt.Errorf("nginx did not start: %s %s", b, eb)
}

// rssKB is the resident set of pid and of its child processes (nginx's
// workers), in kB.
func rssKB(pid int) (int, error) {
	total := 0
	for _, p := range family(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				if err != nil {
					return 0, err
				}
				total += n
			}
		}
	}
	return total, nil
}

// cpuTicks is the user and system CPU time of pid and its children
// (nginx's workers), in clock ticks (1/100 s).
func cpuTicks(pid int) int {
	total := 0
	for _, p := range family(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			// state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
			if f := strings.Fields(string(b[i+1:])); len(f) > 12 {
				u, _ := strconv.Atoi(f[11])
				s, _ := strconv.Atoi(f[12])
				total += u + s
			}
		}
	}
	return total
}

// family is pid and its child processes.
func family(pid int) []int {
	pids := []int{pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				pids = append(pids, c)
			}
		}
	}
	return pids
}

type variant struct {
	name, url string
	pid       int
	warm      *mcp.ClientSession   // latency: one session, one warm connection
	pool      []*mcp.ClientSession // throughput: one session per client
}

func connect(ctx context.Context, hc *http.Client, url string) (*mcp.ClientSession, error) {
	return mcp.NewClient(&mcp.Implementation{Name: "bench-gateway", Version: "1"}, nil).Connect(ctx,
		&mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, DisableStandaloneSSE: true, MaxRetries: -1}, nil)
}

var callParams = &mcp.CallToolParams{Name: mcpexample.ToolSearchDocs, Arguments: map[string]any{"query": "certificate"}}

func call(ctx context.Context, cs *mcp.ClientSession) error {
	res, err := cs.CallTool(ctx, callParams)
	if err != nil {
		return err
	}
	if res.IsError {
		return errors.New("tool error")
	}
	return nil
}

func pct(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func medianF(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func run(o opts) error {
	work, err := os.MkdirTemp("", "bench-gateway-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	p, err := newPKI(work)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	upCmd := exec.Command(self, "-serve-upstream", work)
	upCmd.Stderr = os.Stderr
	up, addrs, err := startLine("upstream", upCmd, upCmd.StdoutPipe, func(m map[string]any) bool { return m["plain"] != nil })
	if err != nil {
		return err
	}
	defer up.stop()
	upPlain := "http://" + addrs["plain"].(string) + "/mcp"

	gw, gwAddr, err := startGateway(o, p, work, "gateway", upPlain)
	if err != nil {
		return err
	}
	defer gw.stop()
	time.Sleep(500 * time.Millisecond)
	gwIdle, err := rssKB(gw.cmd.Process.Pid)
	if err != nil {
		return err
	}

	variants := []*variant{{name: "direct", url: "https://" + addrs["tls"].(string) + "/mcp", pid: up.cmd.Process.Pid},
		{name: "gateway", url: "https://" + gwAddr + "/mcp", pid: gw.cmd.Process.Pid}}
	if o.beforeBin != "" {
		// Another build of the gateway (e.g. the last commit's), side by
		// side with this one in the same rounds.
		bg, bgAddr, err := startGatewayBin(o, o.beforeBin, p, work, "before", upPlain)
		if err != nil {
			return err
		}
		defer bg.stop()
		variants = append(variants, &variant{name: "before", url: "https://" + bgAddr + "/mcp", pid: bg.cmd.Process.Pid})
	}
	if o.nginxBin != "" {
		ng, ngAddr, err := startNginx(o.nginxBin, p, work, addrs["plain"].(string))
		if err != nil {
			return err
		}
		defer ng.stop()
		variants = append(variants, &variant{name: "nginx", url: "https://" + ngAddr + "/mcp", pid: ng.cmd.Process.Pid})
	}
	ctx := context.Background()
	for _, v := range variants {
		hc := p.client("bench-" + v.name)
		if v.warm, err = connect(ctx, hc, v.url); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
		defer v.warm.Close()
		for i := 0; i < o.conc; i++ {
			cs, err := connect(ctx, p.client(fmt.Sprintf("bench-%s-%d", v.name, i)), v.url)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			defer cs.Close()
			v.pool = append(v.pool, cs)
		}
		// Warm-up outside the measurement.
		for i := 0; i < 300; i++ {
			if err := call(ctx, v.warm); err != nil {
				return fmt.Errorf("%s warm-up: %w", v.name, err)
			}
		}
		if _, err := throughput(ctx, v, up.cmd.Process.Pid, 300*time.Millisecond); err != nil {
			return fmt.Errorf("%s warm-up: %w", v.name, err)
		}
	}

	fmt.Printf("tools/call search_docs, go-sdk client and upstream (stateful Streamable HTTP, SSE responses), %d CPUs\n", numCPU())
	fmt.Printf("direct: mTLS straight to the upstream; gateway: mcpca-gateway (mTLS, Cedar policy, audit log per call, caller assertion); nginx: mTLS proxy, no policy\n")
	if len(o.gwArgs)+len(o.gwEnv) > 0 {
		fmt.Printf("gateway started with %s %s\n", strings.Join(o.gwEnv, " "), strings.Join(o.gwArgs, " "))
	}
	fmt.Printf("latency: %d sequential calls per variant per round on one warm connection; throughput: %d clients (a session and connection each) for %v; %d rounds in rotation\n\n",
		o.calls, o.conc, o.dur, o.rounds)
	p50 := map[string][]float64{}
	p99 := map[string][]float64{}
	rate := map[string][]float64{}
	cp50 := map[string][]float64{}
	pcpu := map[string][]float64{}
	ucpu := map[string][]float64{}
	var addedRatio, rateRatio, beforeRatio []float64
	for r := 0; r < o.rounds; r++ {
		lat := map[string]time.Duration{}
		for k := range variants {
			v := variants[(k+r)%len(variants)]
			d := make([]time.Duration, 0, o.calls)
			for i := 0; i < o.calls; i++ {
				t0 := time.Now()
				if err := call(ctx, v.warm); err != nil {
					return fmt.Errorf("%s: %w", v.name, err)
				}
				d = append(d, time.Since(t0))
			}
			lat[v.name] = pct(d, 0.5)
			p50[v.name] = append(p50[v.name], us(pct(d, 0.5)))
			p99[v.name] = append(p99[v.name], us(pct(d, 0.99)))
		}
		tput := map[string]float64{}
		for k := range variants {
			v := variants[(k+r)%len(variants)]
			s, err := throughput(ctx, v, up.cmd.Process.Pid, o.dur)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			tput[v.name] = s.rate
			rate[v.name] = append(rate[v.name], s.rate)
			cp50[v.name] = append(cp50[v.name], us(s.p50))
			pcpu[v.name] = append(pcpu[v.name], s.proxyCPU)
			ucpu[v.name] = append(ucpu[v.name], s.upstreamCPU)
		}
		line := fmt.Sprintf("  round %d:", r+1)
		for _, v := range variants {
			line += fmt.Sprintf("  %s p50 %.0f us, %.0f calls/s;", v.name, us(lat[v.name]), tput[v.name])
		}
		if o.nginxBin != "" {
			ga, na := lat["gateway"]-lat["direct"], lat["nginx"]-lat["direct"]
			addedRatio = append(addedRatio, float64(ga)/float64(na))
			rateRatio = append(rateRatio, tput["gateway"]/tput["nginx"])
			line += fmt.Sprintf("  added gateway/nginx %.2fx, throughput gateway/nginx %.2fx", float64(ga)/float64(na), tput["gateway"]/tput["nginx"])
			if o.beforeBin != "" {
				ba := lat["before"] - lat["direct"]
				beforeRatio = append(beforeRatio, float64(ba)/float64(na))
				line += fmt.Sprintf(", added before/nginx %.2fx", float64(ba)/float64(na))
			}
		}
		fmt.Println(line)
	}
	fmt.Printf("\nmedian of %d rounds\n", o.rounds)
	fmt.Printf("%-8s %10s %10s %12s %14s %16s %14s %14s\n", "variant", "p50", "p99", "added p50", "calls/s @"+strconv.Itoa(o.conc), "p50 @"+strconv.Itoa(o.conc), "proxy CPU/call", "upstream CPU")
	d50 := medianF(p50["direct"])
	for _, v := range variants {
		added := "-"
		if v.name != "direct" {
			added = fmt.Sprintf("%+.0f us", medianF(p50[v.name])-d50)
		}
		proxy := "-"
		if v.name != "direct" {
			proxy = fmt.Sprintf("%.0f us", medianF(pcpu[v.name]))
		}
		fmt.Printf("%-8s %7.0f us %7.0f us %12s %14.0f %13.0f us %14s %11.0f us\n", v.name, medianF(p50[v.name]), medianF(p99[v.name]), added, medianF(rate[v.name]), medianF(cp50[v.name]), proxy, medianF(ucpu[v.name]))
	}
	if o.nginxBin != "" {
		ar, rr := medianF(addedRatio), medianF(rateRatio)
		fmt.Printf("\ngoal: gateway's added p50 <= 2x nginx's: %.2fx (per-round %s) %s\n", ar, fmtRange(addedRatio), verdict(ar <= 2))
		fmt.Printf("goal: throughput at %d clients >= 0.7x nginx's: %.2fx (per-round %s) %s\n", o.conc, rr, fmtRange(rateRatio), verdict(rr >= 0.7))
		if o.beforeBin != "" {
			fmt.Printf("before (%s): added p50 %.2fx nginx's (per-round %s), throughput %.2fx nginx's\n", o.beforeBin, medianF(beforeRatio), fmtRange(beforeRatio), medianF(rate["before"])/medianF(rate["nginx"]))
		}
	}
	for _, v := range variants {
		for _, cs := range v.pool {
			cs.Close()
		}
		v.pool = nil
	}
	gwAfter, _ := rssKB(gw.cmd.Process.Pid)
	fmt.Printf("\ngateway RSS: %.1f MB idle after start, %.1f MB after the load above\n", mb(gwIdle), mb(gwAfter))

	if o.sessions > 0 {
		// A fresh gateway, so the figure is the sessions' and not the load's.
		gw2, gw2Addr, err := startGateway(o, p, work, "gateway-sessions", upPlain)
		if err != nil {
			return err
		}
		defer gw2.stop()
		time.Sleep(500 * time.Millisecond)
		idle, _ := rssKB(gw2.cmd.Process.Pid)
		held, err := holdSessions(ctx, p, "https://"+gw2Addr+"/mcp", o.sessions)
		if err != nil {
			return fmt.Errorf("gateway sessions: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
		full, _ := rssKB(gw2.cmd.Process.Pid)
		if o.cpuProfile != "" {
			_ = gw2.cmd.Process.Signal(syscall.SIGUSR1)
			time.Sleep(time.Second)
			fmt.Printf("heap profile of the gateway with the sessions open: %s.sessions.heap\n", o.cpuProfile)
		}
		fmt.Printf("gateway RSS, fresh process: %.1f MB idle %s; %.1f MB with %d initialized sessions open (one identity and TLS connection each) %s\n",
			mb(idle), verdict(mb(idle) <= 30), mb(full), o.sessions, verdict(mb(full) <= 80))
		held.close()
		gw2.stop()
		if ng := variants[len(variants)-1]; ng.name == "nginx" {
			before, _ := rssKB(ng.pid)
			held, err := holdSessions(ctx, p, ng.url, o.sessions)
			if err != nil {
				return fmt.Errorf("nginx sessions: %w", err)
			}
			time.Sleep(500 * time.Millisecond)
			after, _ := rssKB(ng.pid)
			fmt.Printf("nginx RSS (master and workers), for reference: %.1f MB before, %.1f MB with the same %d sessions open\n", mb(before), mb(after), o.sessions)
			held.close()
		}
	}
	return nil
}

func tlsKeyPair(cert, key string) (*tls.Certificate, error) {
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	kp.Leaf, err = x509.ParseCertificate(kp.Certificate[0])
	return &kp, err
}

func mb(kb int) float64 { return float64(kb) / 1024 }

func verdict(ok bool) string {
	if ok {
		return "[met]"
	}
	return "[MISSED]"
}

func fmtRange(v []float64) string {
	s := slices.Clone(v)
	slices.Sort(s)
	return fmt.Sprintf("%.2f..%.2f", s[0], s[len(s)-1])
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\nprocessor") + 1
}

type tstats struct {
	rate        float64
	p50         time.Duration
	proxyCPU    float64 // µs of the proxy's CPU per call (the upstream's for direct)
	upstreamCPU float64 // µs of the upstream's CPU per call
}

// throughput runs every session of v's pool in a loop for d.
func throughput(ctx context.Context, v *variant, upPid int, d time.Duration) (tstats, error) {
	pc0, uc0 := cpuTicks(v.pid), cpuTicks(upPid)
	var n atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, len(v.pool))
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for i, cs := range v.pool {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				t0 := time.Now()
				if err := call(ctx, cs); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if err, _ := firstErr.Load().(error); err != nil {
		return tstats{}, err
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	perCall := func(ticks int) float64 { return float64(ticks) * 1e4 / float64(n.Load()) }
	return tstats{rate: float64(n.Load()) / el.Seconds(), p50: pct(all, 0.5),
		proxyCPU: perCall(cpuTicks(v.pid) - pc0), upstreamCPU: perCall(cpuTicks(upPid) - uc0)}, nil
}

type heldSessions struct {
	sessions []*mcp.ClientSession
	clients  []*http.Client
}

func (h *heldSessions) close() {
	for _, cs := range h.sessions {
		if cs != nil {
			cs.Close()
		}
	}
	for _, hc := range h.clients {
		hc.CloseIdleConnections()
	}
}

// holdSessions opens n initialized sessions to url, each of its own
// identity over its own TLS connection, and leaves them open.
func holdSessions(ctx context.Context, p *pki, url string, n int) (*heldSessions, error) {
	h := &heldSessions{sessions: make([]*mcp.ClientSession, n), clients: make([]*http.Client, n)}
	for i := range h.clients {
		h.clients[i] = p.client(fmt.Sprintf("agent-%d", i))
	}
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				cs, err := connect(ctx, h.clients[i], url)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				h.sessions[i] = cs
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}
