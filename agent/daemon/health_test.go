package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/agenttest"
)

var t0 = agenttest.T0

func TestHealthSaysSoWhenTheCANeverReturnsAndTheCertificateExpires(t *testing.T) {
	ca := agenttest.NewCA(t)
	fk := clock.NewFake(t0)
	r := &countingRenewer{Next: agent.RenewerFunc(ca.Renewer(fk.Now, time.Hour))}
	r.Down.Store(true)
	armed := newArmed()
	s, err := agent.NewSource(ca.Cert("web", t0, t0.Add(time.Hour)), r, agent.WithName("web"), agent.WithClock(fk),
		agent.WithRenewAt(0.5), agent.WithJitter(0), agent.WithLogger(quiet), armed.option())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(HealthHandler(func() []agent.Status { return []agent.Status{s.Status()} }, fk, 1000))
	defer srv.Close()
	runSource(t, s)
	armed.next(t)

	code, body := get(t, srv.URL+"/healthz")
	if code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("fresh: %d %s", code, body)
	}
	fk.Advance(30 * time.Minute)
	armed.next(t)
	code, body = get(t, srv.URL+"/healthz")
	if code != 200 || !strings.Contains(body, `"last_error":"agent: renew: connection refused"`) {
		t.Fatalf("first failure, under the threshold: %d %s", code, body)
	}
	for fk.Now().Before(t0.Add(time.Hour)) {
		fk.Set(s.Status().NextAttempt)
		armed.next(t)
	}
	code, body = get(t, srv.URL+"/healthz")
	var hb healthBody
	if err := json.Unmarshal([]byte(body), &hb); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusServiceUnavailable || hb.Status != "unhealthy" || len(hb.Identities) != 1 ||
		hb.Identities[0].Reason != "certificate expired at 2026-03-01T13:00:00Z" || hb.Identities[0].Healthy {
		t.Fatalf("expired: %d %s", code, body)
	}
	_, metrics := get(t, srv.URL+"/metrics")
	for _, want := range []string{
		`mcpca_agent_healthy{identity="web"} 0`,
		`mcpca_agent_renewals_total{identity="web"} 0`,
		`mcpca_agent_certificate_not_after_timestamp_seconds{identity="web"} 1.77237e+09`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(metrics, `mcpca_agent_certificate_expiry_seconds{identity="web"} -`) {
		t.Errorf("expiry seconds not negative:\n%s", grep(metrics, "expiry"))
	}
}

func TestHealthFailureThresholdAndMetrics(t *testing.T) {
	fk := clock.NewFake(t0)
	statuses := []agent.Status{
		{Name: "api", NotAfter: t0.Add(time.Hour), Renewals: 7, Failures: 2, ConsecutiveFailures: 2, HookFailures: 1, LastError: errors.New("agent: renew: boom")},
		{Name: "db", NotAfter: t0.Add(2 * time.Hour), Renewals: 3},
	}
	srv := httptest.NewServer(HealthHandler(func() []agent.Status { return statuses }, fk, 3))
	defer srv.Close()
	if code, body := get(t, srv.URL+"/healthz"); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	_, metrics := get(t, srv.URL+"/metrics")
	for _, want := range []string{
		`mcpca_agent_certificate_expiry_seconds{identity="api"} 3600`,
		`mcpca_agent_certificate_expiry_seconds{identity="db"} 7200`,
		`mcpca_agent_renewals_total{identity="api"} 7`,
		`mcpca_agent_renewal_failures_total{identity="api"} 2`,
		`mcpca_agent_hook_failures_total{identity="api"} 1`,
		`mcpca_agent_healthy{identity="db"} 1`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	statuses[0].ConsecutiveFailures = 3
	code, body := get(t, srv.URL+"/healthz")
	if code != 503 || !strings.Contains(body, `"reason":"renewal failed 3 times in a row"`) {
		t.Fatalf("%d %s", code, body)
	}
	statuses = append(statuses, agent.Status{Name: "new", LastError: errors.New("agent: enrol: no token")})
	if _, body := get(t, srv.URL+"/healthz"); !strings.Contains(body, `{"name":"new","healthy":false,"reason":"no certificate yet","seconds_to_expiry":0,"renewals":0,"failures":0,"consecutive_failures":0,"last_error":"agent: enrol: no token"}`) {
		t.Fatalf("%s", body)
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:9000", "[::1]:0", "localhost:8080", "127.0.0.2:1"} {
		if err := CheckLoopback(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	tests := map[string]string{
		"0.0.0.0:9000":  `agent: health address "0.0.0.0:9000" is not a loopback address (use 127.0.0.1:PORT or [::1]:PORT)`,
		":9000":         `agent: health address ":9000" is not a loopback address (use 127.0.0.1:PORT or [::1]:PORT)`,
		"10.0.0.1:9000": `agent: health address "10.0.0.1:9000" is not a loopback address (use 127.0.0.1:PORT or [::1]:PORT)`,
		"127.0.0.1":     `agent: health address "127.0.0.1": address 127.0.0.1: missing port in address`,
	}
	for addr, want := range tests {
		if err := CheckLoopback(addr); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", addr, err, want)
		}
	}
}

func TestServeHealthStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- ServeHealth(ctx, "127.0.0.1:0", HealthHandler(func() []agent.Status { return nil }, nil, 0), func(a net.Addr) { ready <- a })
	}()
	addr := <-ready
	if code, body := get(t, "http://"+addr.String()+"/healthz"); code != 200 || strings.TrimSpace(body) != `{"status":"ok","identities":[]}` {
		t.Fatalf("%d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := ServeHealth(context.Background(), "0.0.0.0:0", nil, nil); err == nil || !strings.Contains(err.Error(), "is not a loopback address") {
		t.Fatal(err)
	}
}

// A health address already in use is an error naming it, returned at once.
func TestServeHealthAddressInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	err = ServeHealth(context.Background(), addr, HealthHandler(func() []agent.Status { return nil }, nil, 0), nil)
	if want := "agent: health endpoint: listen tcp " + addr + ": bind: address already in use"; err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
}

// failingListener is a listener whose Accept fails for good, as a closed or
// broken socket does.
type failingListener struct{ closed chan struct{} }

func (l failingListener) Accept() (net.Conn, error) { return nil, errors.New("accept: socket broken") }
func (l failingListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return nil
}
func (l failingListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9465} }

// healthTestConfig is one identity with nothing to renew yet (no certificate,
// no token): it waits, so only the health endpoint can end Run.
func healthTestConfig(t *testing.T, healthAddr string) func() (*Config, error) {
	dir := t.TempDir()
	srv := agenttest.NewCAServer(t, agenttest.NewCA(t), time.Now, time.Hour)
	if err := os.WriteFile(filepath.Join(dir, "root.pem"), srv.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return func() (*Config, error) {
		cfg := &Config{HealthAddr: healthAddr, Identities: []IdentityConfig{{Name: "web", CAURL: "https://127.0.0.1:1",
			Root: filepath.Join(dir, "root.pem"), Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}}}
		return cfg, cfg.Validate()
	}
}

// When the health endpoint stops serving on its own, Run stops the identities
// and returns the error at once, without waiting for its context.
func TestRunReturnsWhenTheHealthEndpointFails(t *testing.T) {
	l := failingListener{closed: make(chan struct{})}
	d := New(WithLogger(quiet), withListen(func(string) (net.Listener, error) { return l, nil }))
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background(), healthTestConfig(t, "127.0.0.1:9465"), nil) }()
	select {
	case err := <-done:
		if want := "agent: health endpoint on 127.0.0.1:9465 failed: accept: socket broken"; err == nil || err.Error() != want {
			t.Fatalf("err = %v\nwant  %s", err, want)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run kept going without its health endpoint")
	}
	if len(d.Statuses()) != 0 {
		t.Fatalf("identities still running: %+v", d.Statuses())
	}
	select {
	case <-l.closed:
	default:
		t.Fatal("the listener was not closed")
	}
}

// A health address in use stops Run before any identity starts, so no token
// is spent by a daemon that then exits.
func TestRunRefusesAHealthAddressInUseBeforeStarting(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	var obtained atomic.Int64
	d := New(WithLogger(quiet), WithOnObtain(func(string, error) { obtained.Add(1) }))
	err = d.Run(context.Background(), healthTestConfig(t, addr), nil)
	if want := "agent: health endpoint: listen tcp " + addr + ": bind: address already in use"; err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	if n := obtained.Load(); n != 0 || len(d.Statuses()) != 0 {
		t.Fatalf("an identity started: %d attempts, %+v", n, d.Statuses())
	}
}
