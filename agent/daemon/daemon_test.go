package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/agenttest"
	"github.com/mcpca/mcpca/internal/caclient"
)

// daemonEnv is a daemon under test with its CA, files and event channels.
type daemonEnv struct {
	t        *testing.T
	fk       *clock.Fake
	ca       *agenttest.CA
	srv      *agenttest.CAServer
	dir      string
	armed    armedRecorder
	obtained chan error
	applied  chan struct{}

	mu     sync.Mutex
	cfg    *Config
	reload chan struct{}
	cancel context.CancelFunc
	done   chan error
	d      *Daemon
}

func newDaemonEnv(t *testing.T) *daemonEnv {
	fk := clock.NewFake(time.Now().Truncate(time.Second))
	ca := agenttest.NewCA(t)
	e := &daemonEnv{t: t, fk: fk, ca: ca, dir: t.TempDir()}
	e.srv = agenttest.NewCAServer(t, ca, fk.Now, time.Hour)
	if err := os.WriteFile(filepath.Join(e.dir, "root.pem"), e.srv.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *daemonEnv) identity(name string) IdentityConfig {
	return IdentityConfig{
		Name: name, CAURL: e.srv.URL, Root: filepath.Join(e.dir, "root.pem"),
		Cert: filepath.Join(e.dir, name, "cert.pem"), Key: filepath.Join(e.dir, name, "key.pem"),
		Bundle: filepath.Join(e.dir, name, "bundle.pem"), TokenFile: filepath.Join(e.dir, name, "token"),
		RenewAt: 0.5,
		Hooks:   []HookConfig{{Exec: []string{"sh", "-c", `echo "$MCPCA_IDENTITY" >> ` + filepath.Join(e.dir, "hook-runs")}}},
	}
}

func (e *daemonEnv) writeToken(name string) {
	e.t.Helper()
	tok := e.srv.Mint(name, "spiffe://example.test/server/"+name, "127.0.0.1", "localhost")
	os.MkdirAll(filepath.Join(e.dir, name), 0o755)
	if err := os.WriteFile(filepath.Join(e.dir, name, "token"), []byte(tok+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *daemonEnv) setConfig(ids ...IdentityConfig) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg = &Config{Identities: ids}
}

func (e *daemonEnv) start() {
	e.t.Helper()
	e.armed = newArmed()
	e.obtained = make(chan error, 100)
	e.applied = make(chan struct{}, 100)
	e.reload = make(chan struct{})
	e.d = New(WithClock(e.fk), WithLogger(quiet),
		WithSourceOptions(agent.WithJitter(0), e.armed.option()),
		WithOnObtain(func(_ string, err error) { e.obtained <- err }),
		withApplied(func() { e.applied <- struct{}{} }))
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.done = make(chan error, 1)
	load := func() (*Config, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		c := *e.cfg
		c.Identities = append([]IdentityConfig(nil), e.cfg.Identities...)
		return &c, c.Validate()
	}
	go func() { e.done <- e.d.Run(ctx, load, e.reload) }()
	e.t.Cleanup(e.stop)
}

func (e *daemonEnv) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	if err := <-e.done; err != nil {
		e.t.Errorf("Run: %v", err)
	}
}

func (e *daemonEnv) nextObtained() error {
	e.t.Helper()
	select {
	case err := <-e.obtained:
		return err
	case <-time.After(30 * time.Second):
		e.t.Fatal("no attempt to obtain a certificate")
		return nil
	}
}

func (e *daemonEnv) hookRuns() string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "hook-runs"))
	return string(b)
}

func TestDaemonEnrolsFromTokenRenewsAndRunsHooksOnce(t *testing.T) {
	e := newDaemonEnv(t)
	web := e.identity("web")
	e.writeToken("web")
	e.setConfig(web)
	e.start()
	if err := e.nextObtained(); err != nil {
		t.Fatal(err)
	}
	if at := e.armed.next(t); !at.Equal(e.fk.Now().Add(30 * time.Minute)) {
		t.Fatalf("first renewal at %v", at)
	}
	first, err := agent.LoadKeyPair(web.Cert, web.Key)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Leaf.URIs) != 1 || first.Leaf.URIs[0].String() != "spiffe://example.test/server/web" || first.Leaf.DNSNames[0] != "localhost" {
		t.Fatalf("enrolled certificate names %v %v", first.Leaf.URIs, first.Leaf.DNSNames)
	}
	if fi, _ := os.Stat(web.Key); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode().Perm())
	}
	if roots, err := agent.LoadCertificates(web.Bundle); err != nil || !roots[0].Equal(e.ca.Roots()[0]) {
		t.Fatalf("bundle: %v", err)
	}
	if got := e.hookRuns(); got != "web\n" {
		t.Fatalf("hook runs after enrolment: %q", got)
	}
	for i := 1; i <= 3; i++ {
		e.fk.Advance(30 * time.Minute)
		e.armed.next(t)
		if got := e.srv.Renewals.Load(); got != int64(i) {
			t.Fatalf("renewal %d: the CA saw %d", i, got)
		}
		if got := e.hookRuns(); got != strings.Repeat("web\n", i+1) {
			t.Fatalf("renewal %d: hook runs %q", i, got)
		}
		onDisk, err := agent.LoadKeyPair(web.Cert, web.Key)
		if err != nil || !onDisk.Leaf.NotAfter.Equal(e.fk.Now().Add(time.Hour)) {
			t.Fatalf("renewal %d: certificate on disk %v, %v", i, onDisk.Leaf.NotAfter, err)
		}
	}
	e.armed.none(t)
	st := e.d.Statuses()
	if len(st) != 1 || st[0].Name != "web" || st[0].Renewals != 3 || st[0].Failures != 0 {
		t.Fatalf("statuses %+v", st)
	}

	// A restart finds the certificate on disk and does not renew early.
	e.stop()
	e.fk.Advance(10 * time.Minute)
	e.start()
	if err := e.nextObtained(); err != nil {
		t.Fatal(err)
	}
	if at := e.armed.next(t); !at.Equal(e.fk.Now().Add(20 * time.Minute)) {
		t.Fatalf("after restart, next renewal at %v", at)
	}
	if e.srv.Renewals.Load() != 3 || e.srv.Signs.Load() != 1 {
		t.Fatalf("restart renewed or enrolled: %d renewals, %d signs", e.srv.Renewals.Load(), e.srv.Signs.Load())
	}
}

func TestDaemonRekeysWhenConfigured(t *testing.T) {
	e := newDaemonEnv(t)
	web := e.identity("web")
	web.Rekey = true
	web.Combined = filepath.Join(e.dir, "web", "combined.pem")
	e.writeToken("web")
	e.setConfig(web)
	e.start()
	if err := e.nextObtained(); err != nil {
		t.Fatal(err)
	}
	e.armed.next(t)
	before, _ := os.ReadFile(web.Key)
	e.fk.Advance(30 * time.Minute)
	e.armed.next(t)
	after, _ := os.ReadFile(web.Key)
	if e.srv.Rekeys.Load() != 1 || string(before) == string(after) {
		t.Fatalf("rekeys %d; key changed: %v", e.srv.Rekeys.Load(), string(before) != string(after))
	}
	if _, err := agent.LoadKeyPair(web.Cert, web.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.LoadKeyPair(web.Combined, web.Combined); err != nil {
		t.Fatal(err)
	}
}

func TestDaemonExpiredCertificateNamesTheWayBackAndRecoversWithANewToken(t *testing.T) {
	e := newDaemonEnv(t)
	web := e.identity("web")
	expired := e.ca.Cert("web", e.fk.Now().Add(-2*time.Hour), e.fk.Now().Add(-time.Hour))
	if err := web.sink().Store(context.Background(), mustSnapshot(t, expired)); err != nil {
		t.Fatal(err)
	}
	e.setConfig(web)
	e.start()
	err := e.nextObtained()
	want := `agent: identity "web": the certificate expired at ` + expired.Leaf.NotAfter.UTC().Format(time.RFC3339) +
		` and can no longer be renewed and the token cannot be read (open ` + web.TokenFile + `: no such file or directory): ` +
		`issue a new token (mcpca token) and write it to ` + web.TokenFile + `, then reload the agent (SIGHUP), or run mcpca enroll`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	st := e.d.Statuses()
	if ok, reason := st[0].Healthy(e.fk.Now(), 5); ok || reason != "no certificate yet" || st[0].LastError.Error() != want {
		t.Fatalf("status %+v", st[0])
	}
	// The way back: a new token and SIGHUP.
	e.writeToken("web")
	e.reload <- struct{}{}
	<-e.applied
	if err := e.nextObtained(); err != nil {
		t.Fatal(err)
	}
	e.armed.next(t)
	if st := e.d.Statuses(); !st[0].NotAfter.Equal(e.fk.Now().Add(time.Hour)) {
		t.Fatalf("after the new token: %+v", st[0])
	}
	// After a restart the agent does not remember the token; the CA
	// refuses to redeem it twice, and the message says so.
	e.stop()
	e.fk.Advance(2 * time.Hour)
	e.start()
	err = e.nextObtained()
	if err == nil || !strings.HasSuffix(err.Error(), "failed: enrolling: the CA answered 401: token already used or unknown") ||
		!strings.HasPrefix(err.Error(), `agent: identity "web": the certificate expired at `) || strings.Count(err.Error(), "agent: ") != 1 {
		t.Fatalf("reused token: %v", err)
	}
	// The CA's answer stays reachable through every layer.
	var apiErr *caclient.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 401 {
		t.Fatalf("errors.As(*caclient.APIError) on %v: %+v", err, apiErr)
	}
	// Within one run, a refused token is not sent again.
	e.reload <- struct{}{}
	<-e.applied
	err = e.nextObtained()
	if err == nil || !strings.Contains(err.Error(), "and the token in "+web.TokenFile+" is empty or already used: issue a new token") {
		t.Fatalf("refused token sent again: %v", err)
	}
	if e.srv.Signs.Load() != 1 {
		t.Fatalf("%d signs", e.srv.Signs.Load())
	}
}

func TestDaemonWithoutTokenFileSaysHowToEnrol(t *testing.T) {
	e := newDaemonEnv(t)
	web := e.identity("web")
	web.TokenFile = ""
	e.setConfig(web)
	e.start()
	err := e.nextObtained()
	want := `agent: identity "web": there is no certificate yet and no token_file is configured: set token_file to a file holding a new token (mcpca token) and reload the agent (SIGHUP), or run mcpca enroll`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v", err)
	}
}

func TestDaemonCADownAtEnrolmentRetriesWithTheSameToken(t *testing.T) {
	e := newDaemonEnv(t)
	web := e.identity("web")
	e.writeToken("web")
	e.setConfig(web)
	e.srv.Down.Store(true)
	e.start()
	err := e.nextObtained()
	want := `agent: identity "web": there is no certificate yet and enrolling with the token in ` + web.TokenFile +
		` failed: enrolling: the CA answered 503: the CA is down`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	e.srv.Down.Store(false)
	e.fk.Advance(5 * time.Second)
	if err := e.nextObtained(); err != nil {
		t.Fatal(err)
	}
}

func TestDaemonRenewsThroughACAOutageAndEnrolsAfterExpiry(t *testing.T) {
	e := newDaemonEnv(t)
	web := e.identity("web")
	e.writeToken("web")
	e.setConfig(web)
	e.start()
	if err := e.nextObtained(); err != nil {
		t.Fatal(err)
	}
	e.armed.next(t)
	e.srv.Down.Store(true)
	e.fk.Advance(30 * time.Minute)
	e.armed.next(t)
	st := e.d.Statuses()[0]
	if st.LastError == nil || st.LastError.Error() != "agent: renewing: the CA answered 503: the CA is down" {
		t.Fatalf("during the outage: %v", st.LastError)
	}
	// The outage lasts past expiry.
	notAfter := st.NotAfter
	for e.fk.Now().Before(notAfter) {
		e.fk.Set(e.d.Statuses()[0].NextAttempt)
		e.armed.next(t)
	}
	st = e.d.Statuses()[0]
	if !strings.Contains(st.LastError.Error(), "can no longer be renewed and the token in "+web.TokenFile+" is empty or already used") {
		t.Fatalf("after expiry: %v", st.LastError)
	}
	// A new token while the CA is back: the next attempt enrols.
	e.srv.Down.Store(false)
	e.writeToken("web")
	e.reload <- struct{}{}
	<-e.applied
	e.armed.next(t)
	st = e.d.Statuses()[0]
	if st.LastError != nil || !st.NotAfter.After(e.fk.Now()) || e.srv.Signs.Load() != 2 {
		t.Fatalf("after the new token: %+v, %d signs", st, e.srv.Signs.Load())
	}
}

func TestDaemonReloadAddsAndRemovesIdentities(t *testing.T) {
	e := newDaemonEnv(t)
	web, api := e.identity("web"), e.identity("api")
	e.writeToken("web")
	e.writeToken("api")
	e.setConfig(web)
	e.start()
	if err := e.nextObtained(); err != nil {
		t.Fatal(err)
	}
	e.setConfig(web, api)
	e.reload <- struct{}{}
	<-e.applied
	if err := e.nextObtained(); err != nil {
		t.Fatal(err)
	}
	if st := e.d.Statuses(); len(st) != 2 || st[0].Name != "api" || st[1].Name != "web" {
		t.Fatalf("statuses %+v", st)
	}
	e.mu.Lock()
	e.cfg = &Config{Identities: []IdentityConfig{{Name: "broken"}}}
	e.mu.Unlock()
	e.reload <- struct{}{}
	<-e.applied
	if st := e.d.Statuses(); len(st) != 2 {
		t.Fatalf("a bad config replaced the running one: %+v", st)
	}
	e.setConfig(api)
	e.reload <- struct{}{}
	<-e.applied
	if st := e.d.Statuses(); len(st) != 1 || st[0].Name != "api" {
		t.Fatalf("statuses %+v", st)
	}
}

func mustSnapshot(t *testing.T, cert tls.Certificate) *agent.Snapshot {
	t.Helper()
	s, err := agent.NewSnapshot(cert, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A root rotation on the CA reaches the bundle file at the next bundle
// refresh, without a renewal, and the hooks run so consumers reload trust.
func TestDaemonRootRotationReachesTheBundleFile(t *testing.T) {
	e := newDaemonEnv(t)
	e.srv = agenttest.NewCAServer(t, e.ca, e.fk.Now, 24*time.Hour)
	web := e.identity("web")
	web.CAURL = e.srv.URL
	hooked := make(chan os.Signal, 10)
	signal.Notify(hooked, syscall.SIGUSR1)
	defer signal.Stop(hooked)
	web.Hooks = []HookConfig{{SignalPID: os.Getpid(), Signal: "USR1"}}
	e.writeToken("web")
	e.setConfig(web)
	e.start()
	if err := e.nextObtained(); err != nil {
		t.Fatal(err)
	}
	waitHook(t, hooked) // after enrolment
	e.armed.next(t)
	next := agenttest.NewCA(t).Roots()[0]
	e.srv.AddRoots(next)
	e.fk.Advance(agent.DefaultBundleInterval)
	waitHook(t, hooked) // after the bundle changed
	roots, err := agent.LoadCertificates(web.Bundle)
	if err != nil || len(roots) != 2 || !roots[1].Equal(next) {
		t.Fatalf("bundle file after rotation: %d roots, %v", len(roots), err)
	}
	if st := e.d.Statuses()[0]; st.Renewals != 0 {
		t.Fatalf("renewed: %+v", st)
	}
}

func waitHook(t *testing.T, c <-chan os.Signal) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(30 * time.Second):
		t.Fatal("the hook did not run")
	}
}

func TestDaemonRunErrors(t *testing.T) {
	d := New(WithLogger(quiet))
	err := d.Run(context.Background(), func() (*Config, error) { return LoadConfig("/nonexistent/agent.yaml") }, nil)
	if err == nil || err.Error() != "agent: reading config: open /nonexistent/agent.yaml: no such file or directory" {
		t.Fatalf("err = %v", err)
	}
	// A busy health port stops the daemon with the reason.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	e := newDaemonEnv(t)
	e.writeToken("web")
	cfg := &Config{HealthAddr: busy.Addr().String(), Identities: []IdentityConfig{e.identity("web")}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background(), func() (*Config, error) { return cfg, nil }, nil)
	want := "agent: health endpoint: listen tcp " + busy.Addr().String() + ": bind: address already in use"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if len(d.Statuses()) != 0 {
		t.Fatal("identities left running")
	}
}

func TestDaemonServesHealth(t *testing.T) {
	e := newDaemonEnv(t)
	e.writeToken("web")
	ready := make(chan net.Addr, 1)
	d := New(WithLogger(quiet), WithClock(e.fk), WithHealthReady(func(a net.Addr) { ready <- a }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- d.Run(ctx, func() (*Config, error) {
			c := &Config{HealthAddr: "127.0.0.1:0", Identities: []IdentityConfig{e.identity("web")}}
			return c, c.Validate()
		}, nil)
	}()
	addr := <-ready
	code, body := get(t, "http://"+addr.String()+"/healthz")
	if code != 200 && code != 503 || !strings.Contains(body, `"name":"web"`) {
		t.Fatalf("%d %s", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Files that cannot work (a root that is not there, a certificate and key
// that do not load) stop the daemon at start, naming the file; on reload
// they are refused and the running configuration is kept.
func TestDaemonRefusesBrokenFiles(t *testing.T) {
	e := newDaemonEnv(t)
	web := e.identity("web")
	web.Root = filepath.Join(e.dir, "missing-root.pem")
	api := e.identity("api")
	os.MkdirAll(filepath.Join(e.dir, "api"), 0o755)
	os.WriteFile(api.Cert, []byte("not a certificate"), 0o644)
	os.WriteFile(api.Key, []byte("not a key"), 0o600)
	for _, tc := range []struct {
		id   IdentityConfig
		want string
	}{
		{web, `agent: identity "web": the CA root: reading certificates: open ` + web.Root + `: no such file or directory`},
		{api, `agent: identity "api": loading ` + api.Cert + ` and ` + api.Key + `: tls: failed to find any PEM data in certificate input`},
	} {
		d := New(WithLogger(quiet))
		err := d.Run(context.Background(), func() (*Config, error) {
			c := &Config{Identities: []IdentityConfig{tc.id}}
			return c, c.Validate()
		}, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Run: %v\nwant %s", err, tc.want)
		}
	}
	// On reload: refused, the running identity goes on.
	e.writeToken("good")
	good := e.identity("good")
	e.setConfig(good)
	e.start()
	if err := e.nextObtained(); err != nil {
		t.Fatal(err)
	}
	e.setConfig(good, web)
	e.reload <- struct{}{}
	<-e.applied
	if st := e.d.Statuses(); len(st) != 1 || st[0].Name != "good" {
		t.Fatalf("after a refused reload: %+v", st)
	}
}

// The agent checks that it can write the certificate before it spends the
// token: where the directory cannot be made (a file is in the way), the
// token stays unused, and once it can the same token enrols. (Tests run as
// root here, so a read-only directory would not stop them.)
func TestDaemonChecksItCanWriteBeforeSpendingTheToken(t *testing.T) {
	e := newDaemonEnv(t)
	web := e.identity("web")
	dir := filepath.Join(e.dir, "certs")
	if err := os.WriteFile(dir, []byte("a file where the directory should be"), 0o600); err != nil {
		t.Fatal(err)
	}
	web.Key = filepath.Join(dir, "web.key")
	e.writeToken("web")
	e.setConfig(web)
	e.start()
	err := e.nextObtained()
	want := `agent: identity "web": there is no certificate yet, but cannot write ` + web.Key + `: not a directory (the token was not used)`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant  %s", err, want)
	}
	if n := e.srv.Signs.Load(); n != 0 {
		t.Fatalf("the CA saw %d enrolments: the token was spent", n)
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	e.reload <- struct{}{}
	<-e.applied
	if err := e.nextObtained(); err != nil {
		t.Fatalf("with the directory there, the same token: %v", err)
	}
	if n := e.srv.Signs.Load(); n != 1 {
		t.Fatalf("the CA saw %d enrolments", n)
	}
}
