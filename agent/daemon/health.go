package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/clock"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultFailureThreshold is how many consecutive failed renewals make an
// identity unhealthy before its certificate expires.
const DefaultFailureThreshold = 5

// HealthHandler serves /healthz and /metrics for the identities statuses
// returns, judged at clk's now with threshold consecutive failures tolerated.
//
// /healthz answers 200 when every identity is healthy and 503 otherwise,
// with a JSON body naming each identity, its expiry and why it is unhealthy.
// An identity is unhealthy when its certificate has expired (or was never
// obtained) or its renewal has failed threshold times in a row.
//
// /metrics is Prometheus text: per identity (label "identity")
// mcpca_agent_certificate_expiry_seconds (seconds left, negative once
// expired), mcpca_agent_certificate_not_after_timestamp_seconds,
// mcpca_agent_renewals_total, mcpca_agent_renewal_failures_total,
// mcpca_agent_hook_failures_total and mcpca_agent_healthy (1 or 0), plus the
// Go runtime and process collectors.
func HealthHandler(statuses func() []agent.Status, clk clock.Clock, threshold int) http.Handler {
	return healthHandler(statuses, clk, func() int { return threshold })
}

func healthHandler(statuses func() []agent.Status, clk clock.Clock, thresholdOf func() int) http.Handler {
	clk = clock.Or(clk)
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{statuses: statuses, clock: clk, threshold: thresholdOf},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		now := clk.Now()
		threshold := thresholdOf()
		body := healthBody{Status: "ok", Identities: []identityHealth{}}
		code := http.StatusOK
		for _, st := range statuses() {
			ok, reason := st.Healthy(now, threshold)
			ih := identityHealth{Name: st.Name, Healthy: ok, Reason: reason,
				Renewals: st.Renewals, Failures: st.Failures, ConsecutiveFailures: st.ConsecutiveFailures}
			if !st.NextAttempt.IsZero() {
				next := st.NextAttempt.UTC()
				ih.NextAttempt = &next
			}
			if !st.NotAfter.IsZero() {
				na := st.NotAfter.UTC()
				ih.NotAfter = &na
				ih.SecondsToExpiry = int64(st.NotAfter.Sub(now) / time.Second)
			}
			if st.LastError != nil {
				ih.LastError = st.LastError.Error()
			}
			if !ok {
				body.Status = "unhealthy"
				code = http.StatusServiceUnavailable
			}
			body.Identities = append(body.Identities, ih)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(body)
	})
	return mux
}

type healthBody struct {
	Status     string           `json:"status"`
	Identities []identityHealth `json:"identities"`
}

type identityHealth struct {
	Name                string     `json:"name"`
	Healthy             bool       `json:"healthy"`
	Reason              string     `json:"reason,omitempty"`
	NotAfter            *time.Time `json:"not_after,omitempty"`
	NextAttempt         *time.Time `json:"next_renewal,omitempty"`
	SecondsToExpiry     int64      `json:"seconds_to_expiry"`
	Renewals            uint64     `json:"renewals"`
	Failures            uint64     `json:"failures"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	LastError           string     `json:"last_error,omitempty"`
}

var (
	descExpiry   = prometheus.NewDesc("mcpca_agent_certificate_expiry_seconds", "Seconds until the certificate expires (negative once expired).", []string{"identity"}, nil)
	descNotAfter = prometheus.NewDesc("mcpca_agent_certificate_not_after_timestamp_seconds", "End of the certificate's validity, Unix time.", []string{"identity"}, nil)
	descRenewals = prometheus.NewDesc("mcpca_agent_renewals_total", "Successful renewals.", []string{"identity"}, nil)
	descFailures = prometheus.NewDesc("mcpca_agent_renewal_failures_total", "Failed renewal attempts.", []string{"identity"}, nil)
	descHooks    = prometheus.NewDesc("mcpca_agent_hook_failures_total", "Failed reload hook runs.", []string{"identity"}, nil)
	descHealthy  = prometheus.NewDesc("mcpca_agent_healthy", "1 when the identity is healthy, else 0.", []string{"identity"}, nil)
)

// collector reads the statuses at scrape time, so idle agents do no metric
// work at all.
type collector struct {
	statuses  func() []agent.Status
	clock     clock.Clock
	threshold func() int
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descExpiry, descNotAfter, descRenewals, descFailures, descHooks, descHealthy} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	now := c.clock.Now()
	threshold := c.threshold()
	for _, st := range c.statuses() {
		if !st.NotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(descExpiry, prometheus.GaugeValue, st.NotAfter.Sub(now).Seconds(), st.Name)
			ch <- prometheus.MustNewConstMetric(descNotAfter, prometheus.GaugeValue, float64(st.NotAfter.Unix()), st.Name)
		}
		ch <- prometheus.MustNewConstMetric(descRenewals, prometheus.CounterValue, float64(st.Renewals), st.Name)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(st.Failures), st.Name)
		ch <- prometheus.MustNewConstMetric(descHooks, prometheus.CounterValue, float64(st.HookFailures), st.Name)
		v := 0.0
		if ok, _ := st.Healthy(now, threshold); ok {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, v, st.Name)
	}
}

// CheckLoopback returns an error unless addr ("host:port") is on a loopback
// address: the health and metrics endpoint is for the local host only.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return errorf("health address %q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return errorf("health address %q is not a loopback address (use 127.0.0.1:PORT or [::1]:PORT)", addr)
}

// ServeHealth serves h on addr, which must be a loopback address, until ctx
// is done, then returns nil. ready, if not nil, receives the bound address
// once listening. It returns at once, with an error naming the address, when
// it cannot listen (the address is in use) or serving fails.
func ServeHealth(ctx context.Context, addr string, h http.Handler, ready func(net.Addr)) error {
	ln, err := listenHealth(addr, nil)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(ln.Addr())
	}
	return serveHealth(ctx, ln, h)
}

// listenHealth checks that addr is a loopback address and listens on it
// (through listen, when not nil: tests).
func listenHealth(addr string, listen func(addr string) (net.Listener, error)) (net.Listener, error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	if listen == nil {
		listen = func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	}
	ln, err := listen(addr)
	if err != nil {
		return nil, errorf("health endpoint: %w", err)
	}
	return ln, nil
}

// serveHealth serves h on ln until ctx is done (then nil) or serving fails
// (then the error, at once: it does not wait for ctx).
func serveHealth(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-served: // Serve returns on its own only when it fails
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		err = <-served
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return errorf("health endpoint on %s failed: %w", ln.Addr(), err)
}
