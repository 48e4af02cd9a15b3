package daemon

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/caclient"
)

// Option configures New.
type Option interface{ applyDaemon(*daemonConfig) }

type optionFunc func(*daemonConfig)

func (f optionFunc) applyDaemon(c *daemonConfig) { f(c) }

type daemonConfig struct {
	clock      clock.Clock
	logger     *slog.Logger
	sourceOpts []agent.Option
	onObtain   func(name string, err error)
	onApplied  func()
	onHealth   func(net.Addr)
	listen     func(addr string) (net.Listener, error)
}

// WithClock sets the daemon's clock (default clock.Real).
func WithClock(c clock.Clock) Option {
	return optionFunc(func(d *daemonConfig) { d.clock = c })
}

// WithLogger sets the daemon's logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(d *daemonConfig) { d.logger = l })
}

// WithSourceOptions adds options to every Source the daemon runs (jitter,
// backoff).
func WithSourceOptions(opts ...agent.Option) Option {
	return optionFunc(func(d *daemonConfig) { d.sourceOpts = append(d.sourceOpts, opts...) })
}

// WithHealthReady is called with the address of the health endpoint once it
// listens.
func WithHealthReady(f func(net.Addr)) Option {
	return optionFunc(func(d *daemonConfig) { d.onHealth = f })
}

// withListen replaces net.Listen for the health endpoint (tests).
func withListen(f func(addr string) (net.Listener, error)) Option {
	return optionFunc(func(d *daemonConfig) { d.listen = f })
}

// WithOnObtain reports every attempt to get an identity's first
// certificate (from its files, or enrolling with its token file): nil when
// it has one, the error otherwise, after the next attempt is scheduled. For
// programs that embed the daemon and for tests.
func WithOnObtain(f func(name string, err error)) Option {
	return optionFunc(func(d *daemonConfig) { d.onObtain = f })
}

// withApplied reports every applied reload (tests).
func withApplied(f func()) Option {
	return optionFunc(func(d *daemonConfig) { d.onApplied = f })
}

// Daemon keeps the certificates of several identities fresh on disk: for each
// it loads the certificate (or enrols with the token file when there is none
// or it has expired), runs a Source that renews it and stores every renewal
// through a FileSink, and runs the reload hooks. A failing identity never
// stops the others nor the daemon: it reports its error through Statuses,
// the health endpoint and the logs, and retries with backoff.
type Daemon struct {
	cfg daemonConfig

	mu        sync.Mutex
	ids       map[string]*managed
	threshold int
}

// New returns a daemon with no identities; Run or Apply gives it some.
func New(opts ...Option) *Daemon {
	var cfg daemonConfig
	for _, o := range opts {
		o.applyDaemon(&cfg)
	}
	cfg.clock = clock.Or(cfg.clock)
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	return &Daemon{cfg: cfg, ids: map[string]*managed{}, threshold: DefaultFailureThreshold}
}

// Run applies the configuration load returns, serves the health endpoint if
// one is configured, reloads the configuration whenever reload receives
// (SIGHUP), and stops every identity cleanly when ctx is done (SIGTERM),
// returning nil. A configuration that fails to load at start is an error; on
// reload it is logged and the running configuration is kept. The health
// address is read at start only; it is bound before any identity starts (so
// an address in use fails before a token is spent), and if the endpoint
// fails later the daemon stops every identity and returns its error.
func (d *Daemon) Run(ctx context.Context, load func() (*Config, error), reload <-chan struct{}) error {
	cfg, err := load()
	if err == nil {
		err = cfg.CheckFiles()
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var healthDone chan struct{}
	if cfg.HealthAddr != "" {
		ln, err := listenHealth(cfg.HealthAddr, d.cfg.listen)
		if err != nil {
			return err
		}
		if d.cfg.onHealth != nil {
			d.cfg.onHealth(ln.Addr())
		}
		healthDone = make(chan struct{})
		go func() {
			defer close(healthDone)
			if err := serveHealth(ctx, ln, d.Handler()); err != nil {
				d.cfg.logger.Error("agent: the health endpoint failed; stopping", "error", err.Error())
				cancel(err)
			}
		}()
	}
	d.Apply(ctx, cfg)
	d.cfg.logger.Info("agent: started", "identities", len(cfg.Identities))
	for {
		select {
		case <-ctx.Done():
			d.stopAll()
			if healthDone != nil {
				<-healthDone
			}
			if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			d.cfg.logger.Info("agent: stopped")
			return nil
		case <-reload:
			cfg, err := load()
			if err == nil {
				err = cfg.CheckFiles()
			}
			if err != nil {
				d.cfg.logger.Error("agent: reloading the configuration failed; keeping the running one", "error", err.Error())
				if d.cfg.onApplied != nil {
					d.cfg.onApplied()
				}
				continue
			}
			d.Apply(ctx, cfg)
			d.cfg.logger.Info("agent: configuration reloaded", "identities", len(cfg.Identities))
			if d.cfg.onApplied != nil {
				d.cfg.onApplied()
			}
		}
	}
}

// Apply makes the running identities match cfg: it stops the identities that
// are gone or changed, starts the new and changed ones, and nudges the
// unchanged ones that are waiting for a token to look again. The identities
// run until ctx is done. Run calls it; do not call it concurrently.
func (d *Daemon) Apply(ctx context.Context, cfg *Config) {
	want := map[string]IdentityConfig{}
	for _, id := range cfg.Identities {
		want[id.Name] = id
	}
	// Stop the old first (outside the lock, so health keeps answering
	// while a hook finishes), and only then start their replacements, so
	// two runners never write the same files.
	d.mu.Lock()
	d.threshold = cfg.FailureThreshold
	var gone []*managed
	for name, m := range d.ids {
		if c, ok := want[name]; !ok || !reflect.DeepEqual(c, m.cfg) {
			gone = append(gone, m)
			delete(d.ids, name)
		}
	}
	d.mu.Unlock()
	for _, m := range gone {
		m.stop()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range cfg.Identities {
		if m, ok := d.ids[id.Name]; ok {
			m.nudge()
			continue
		}
		m := d.newManaged(id)
		d.ids[id.Name] = m
		mctx, cancel := context.WithCancel(ctx)
		m.cancel = cancel
		go m.run(mctx)
	}
}

func (d *Daemon) stopAll() {
	d.mu.Lock()
	ms := d.ids
	d.ids = map[string]*managed{}
	d.mu.Unlock()
	for _, m := range ms {
		m.cancel()
	}
	for _, m := range ms {
		<-m.done
	}
}

// Statuses returns the status of every identity, sorted by name.
func (d *Daemon) Statuses() []agent.Status {
	d.mu.Lock()
	ms := make([]*managed, 0, len(d.ids))
	for _, m := range d.ids {
		ms = append(ms, m)
	}
	d.mu.Unlock()
	sort.Slice(ms, func(i, j int) bool { return ms[i].cfg.Name < ms[j].cfg.Name })
	out := make([]agent.Status, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.status())
	}
	return out
}

// Handler serves /healthz and /metrics for the daemon's identities, with the
// failure threshold of the configuration in force.
func (d *Daemon) Handler() http.Handler {
	return healthHandler(d.Statuses, d.cfg.clock, d.failureThreshold)
}

func (d *Daemon) failureThreshold() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.threshold
}

// managed is one running identity.
type managed struct {
	d      *Daemon
	cfg    IdentityConfig
	log    *slog.Logger
	hooks  *agent.Hooks
	client *agent.CAClient
	cancel context.CancelFunc
	done   chan struct{}
	poke   chan struct{}

	mu        sync.Mutex
	src       *agent.Source
	lastErr   error
	usedToken [sha256.Size]byte
}

func (d *Daemon) newManaged(id IdentityConfig) *managed {
	log := d.cfg.logger.With("identity", id.Name)
	m := &managed{d: d, cfg: id, log: log, hooks: agent.NewHooks(log, id.hooks()...),
		done: make(chan struct{}), poke: make(chan struct{}, 1)}
	return m
}

func (m *managed) stop() {
	m.cancel()
	<-m.done
}

func (m *managed) nudge() {
	m.mu.Lock()
	src := m.src
	m.mu.Unlock()
	if src == nil {
		select {
		case m.poke <- struct{}{}:
		default:
		}
		return
	}
	if !m.d.cfg.clock.Now().Before(src.Current().NotAfter()) {
		src.RenewNow()
	}
}

func (m *managed) status() agent.Status {
	m.mu.Lock()
	src, lastErr := m.src, m.lastErr
	m.mu.Unlock()
	var st agent.Status
	if src != nil {
		st = src.Status()
	} else {
		st = agent.Status{Name: m.cfg.Name, LastError: lastErr}
	}
	st.HookFailures = m.hooks.Failures()
	return st
}

// run gets a first certificate, retrying with backoff, then renews it until
// ctx is done.
func (m *managed) run(ctx context.Context) {
	defer close(m.done)
	clk := m.d.cfg.clock
	var roots []*x509.Certificate
	var cert tls.Certificate
	for streak := 1; ; streak++ {
		var err error
		roots, cert, err = m.obtain(ctx)
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		m.lastErr = err
		m.mu.Unlock()
		if err == nil {
			if m.d.cfg.onObtain != nil {
				m.d.cfg.onObtain(m.cfg.Name, nil)
			}
			break
		}
		wait := retryWait(streak)
		m.log.Error("agent: no usable certificate; will try again", "error", err.Error(), "retry_in", wait.String())
		t := clk.NewTimer(wait)
		if m.d.cfg.onObtain != nil {
			m.d.cfg.onObtain(m.cfg.Name, err) // after arming, so tests can move the clock
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-m.poke:
			t.Stop()
		}
	}
	var src *agent.Source
	m.client = &agent.CAClient{CAURL: m.cfg.CAURL, Rekey: m.cfg.Rekey, Clock: m.d.cfg.clock, TrustRoots: func() *x509.CertPool {
		pool := x509.NewCertPool()
		for _, r := range roots {
			pool.AddCert(r)
		}
		for _, r := range src.Roots() {
			pool.AddCert(r)
		}
		return pool
	}}
	opts := []agent.Option{agent.WithName(m.cfg.Name), agent.WithClock(clk), agent.WithRenewAt(m.cfg.RenewAt), agent.WithRoots(roots),
		agent.WithBundle(m.client, 0), agent.WithStore(m.cfg.sink()), agent.WithLogger(m.d.cfg.logger)}
	opts = append(opts, m.d.cfg.sourceOpts...)
	src, err := agent.NewSource(cert, agent.RenewerFunc(m.renew), opts...)
	if err != nil {
		m.mu.Lock()
		m.lastErr = err
		m.mu.Unlock()
		m.log.Error("agent: cannot start renewing", "error", err.Error())
		return
	}
	src.Subscribe(func(sn *agent.Snapshot) { m.hooks.Run(ctx, sn) })
	m.mu.Lock()
	m.src = src
	m.lastErr = nil
	m.mu.Unlock()
	m.log.Info("agent: renewing", "not_after", cert.Leaf.NotAfter, "serial", cert.Leaf.SerialNumber.Text(16))
	src.Run(ctx)
}

// renew renews through the CA while the certificate is valid, and enrols
// again from the token file once it has expired.
func (m *managed) renew(ctx context.Context, cur tls.Certificate) (tls.Certificate, error) {
	if !m.d.cfg.clock.Now().Before(cur.Leaf.NotAfter) {
		// The source stores what this returns, with its bundle.
		snap, err := m.enrol(ctx, m.expired(cur.Leaf), func(token string) (*agent.Snapshot, error) {
			cert, err := m.client.Enroll(ctx, token)
			if err != nil {
				return nil, err
			}
			return agent.NewSnapshot(cert, nil)
		})
		if err != nil {
			return tls.Certificate{}, err
		}
		return snap.Certificate, nil
	}
	return m.client.Renew(ctx, cur)
}

func (m *managed) expired(leaf *x509.Certificate) string {
	return "the certificate expired at " + leaf.NotAfter.UTC().Format(time.RFC3339) + " and can no longer be renewed"
}

// obtain returns the roots and a usable certificate: the one on disk, or a
// new one from the token file when there is none or it has expired. A new
// certificate is written and the hooks run.
func (m *managed) obtain(ctx context.Context) ([]*x509.Certificate, tls.Certificate, error) {
	roots, err := agent.LoadCertificates(m.cfg.Root)
	if err != nil {
		return nil, tls.Certificate{}, errorf("identity %q: the CA root: %w", m.cfg.Name, err)
	}
	m.client = &agent.CAClient{CAURL: m.cfg.CAURL, Clock: m.d.cfg.clock, TrustRoots: func() *x509.CertPool { return poolOf(roots) }}
	cert, err := agent.LoadKeyPair(m.cfg.Cert, m.cfg.Key)
	var why string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		why = "there is no certificate yet"
	case err != nil:
		return nil, tls.Certificate{}, errorf("identity %q: %w", m.cfg.Name, err)
	case !m.d.cfg.clock.Now().Before(cert.Leaf.NotAfter):
		why = m.expired(cert.Leaf)
	default:
		return roots, cert, nil
	}
	// The first certificate goes through the agent's one enrol-and-store
	// path: the files are checked before the token is spent, then key,
	// chain and bundle are written as one step.
	snap, err := m.enrol(ctx, why, func(token string) (*agent.Snapshot, error) {
		return m.cfg.sink().Enroll(ctx, m.client, token, nil, roots...)
	})
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	m.hooks.Run(ctx, snap)
	return roots, snap.Certificate, nil
}

// enrol redeems the token file with redeem, once per token; why says why
// it is needed.
func (m *managed) enrol(ctx context.Context, why string, redeem func(token string) (*agent.Snapshot, error)) (*agent.Snapshot, error) {
	wayBack := "issue a new token (mcpca token) and write it to " + m.cfg.TokenFile + ", then reload the agent (SIGHUP), or run mcpca enroll"
	if m.cfg.TokenFile == "" {
		return nil, errorf("identity %q: %s and no token_file is configured: set token_file to a file holding a new token (mcpca token) and reload the agent (SIGHUP), or run mcpca enroll", m.cfg.Name, why)
	}
	b, err := os.ReadFile(m.cfg.TokenFile)
	if err != nil {
		return nil, errorf("identity %q: %s and the token cannot be read (%v): %s", m.cfg.Name, why, err, wayBack)
	}
	token := strings.TrimSpace(string(b))
	sum := sha256.Sum256([]byte(token))
	m.mu.Lock()
	used := sum == m.usedToken
	m.mu.Unlock()
	if token == "" || used {
		return nil, errorf("identity %q: %s and the token in %s is empty or already used: %s", m.cfg.Name, why, m.cfg.TokenFile, wayBack)
	}
	// Where the certificate goes must be writable before the token is
	// spent: a token redeemed for a certificate that cannot be stored is
	// lost.
	if err := m.cfg.sink().CheckWritable(); err != nil {
		return nil, errorf("identity %q: %s, but %w", m.cfg.Name, why, err)
	}
	snap, err := redeem(token)
	var apiErr *caclient.APIError
	if err == nil || (errors.As(err, &apiErr) && apiErr.Status >= 400 && apiErr.Status < 500) {
		// A token is single use: once the CA has seen it, do not send it
		// again.
		m.mu.Lock()
		m.usedToken = sum
		m.mu.Unlock()
	}
	if err != nil {
		return nil, errorf("identity %q: %s and enrolling with the token in %s failed: %w", m.cfg.Name, why, m.cfg.TokenFile, err)
	}
	m.log.Info("agent: enrolled with the token file", "token_file", m.cfg.TokenFile, "not_after", snap.Leaf().NotAfter)
	return snap, nil
}

func poolOf(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// retryWait is the wait before the next try to get a first certificate:
// 5s doubling to at most 5m.
func retryWait(streak int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < streak && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}
