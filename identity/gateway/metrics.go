package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	decisions      *prometheus.CounterVec
	upstreamTime   *prometheus.HistogramVec
	upstreamErrors prometheus.Counter
	upstreamCodes  *prometheus.CounterVec
	sessions       prometheus.Gauge

	// counters and timers are the children of decisions and upstreamTime
	// for the label values they can have, looked up once (WithLabelValues
	// hashes the labels and takes a lock on every call).
	counters map[[2]string]prometheus.Counter
	timers   map[string]prometheus.Observer
}

// NewMetrics registers the gateway's metrics with reg:
// mcpca_gateway_decisions_total{action,outcome} (outcome allow, deny or
// busy), mcpca_gateway_upstream_seconds{method} (time to the upstream's
// response headers), mcpca_gateway_upstream_errors_total,
// mcpca_gateway_upstream_refusals_total{code} (non-2xx answers) and
// mcpca_gateway_sessions_open.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpca_gateway_decisions_total",
			Help: "JSON-RPC requests decided, by action and outcome (allow, deny, busy)."}, []string{"action", "outcome"}),
		upstreamTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mcpca_gateway_upstream_seconds",
			Help: "Time until the upstream's response headers, by HTTP method.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"method"}),
		upstreamErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpca_gateway_upstream_errors_total",
			Help: "Requests the upstream did not answer properly (unreachable, timed out, not MCP)."}),
		upstreamCodes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpca_gateway_upstream_refusals_total",
			Help: "Non-2xx answers of the upstream, by status code."}, []string{"code"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mcpca_gateway_sessions_open",
			Help: "MCP sessions created through the gateway and not ended (sessions that expire upstream are counted until their binding is dropped)."}),
	}
	reg.MustRegister(m.decisions, m.upstreamTime, m.upstreamErrors, m.upstreamCodes, m.sessions)
	m.counters = map[[2]string]prometheus.Counter{}
	for a := range knownActions {
		for _, o := range []string{"allow", "deny", "busy"} {
			m.counters[[2]string{a, o}] = m.decisions.WithLabelValues(a, o)
		}
	}
	m.timers = map[string]prometheus.Observer{}
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		m.timers[method] = m.upstreamTime.WithLabelValues(method)
	}
	return m
}

// actions bounds the label values of decisions to the methods of MCP.
var knownActions = map[string]bool{
	"tools/call": true, "tools/list": true, "resources/read": true, "resources/list": true,
	"resources/templates/list": true, "resources/subscribe": true, "resources/unsubscribe": true,
	"prompts/get": true, "prompts/list": true, "completion/complete": true, "logging/setLevel": true,
	"initialize": true, "ping": true, "server/discover": true, "subscriptions/listen": true,
}

func (m *Metrics) decision(action, outcome string) {
	if m == nil {
		return
	}
	if c := m.counters[[2]string{action, outcome}]; c != nil {
		c.Inc()
		return
	}
	if !knownActions[action] {
		action = "other"
	}
	m.decisions.WithLabelValues(action, outcome).Inc()
}

func (m *Metrics) upstream(method string, d time.Duration, err error) {
	if m == nil || err != nil {
		return
	}
	if o := m.timers[method]; o != nil {
		o.Observe(d.Seconds())
		return
	}
	m.upstreamTime.WithLabelValues(method).Observe(d.Seconds())
}

func (m *Metrics) upstreamError() {
	if m != nil {
		m.upstreamErrors.Inc()
	}
}

func (m *Metrics) upstreamStatus(code int) {
	if m != nil {
		m.upstreamCodes.WithLabelValues(strconv.Itoa(code)).Inc()
	}
}

func (m *Metrics) sessionOpened() {
	if m != nil {
		m.sessions.Inc()
	}
}

func (m *Metrics) sessionClosed() {
	if m != nil {
		m.sessions.Dec()
	}
}
