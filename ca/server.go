package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/smallstep/certificates/api"
	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/certificates/db"
	"go.step.sm/crypto/pemutil"

	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/admission"
	"github.com/mcpca/mcpca/internal/ratelimit"
)

// DefaultMaxBodyBytes bounds every request body the CA reads.
const DefaultMaxBodyBytes = 64 << 10

// Server is a running mcpca CA: step-ca's authority and HTTP API, with
// mcpca's enrolment, renewal and revocation handlers in front of it.
type Server struct {
	dir      string
	layout   Layout
	password []byte
	cfg      serverConfig
	lock     *dirLock
	db       db.AuthDB
	store    *store.Store // nil with WithStepCADatabase

	admission *admission.Limiter

	mu    sync.Mutex // serialises Reload and Close
	state atomic.Pointer[serverState]

	tlsMu   sync.Mutex
	tlsCert *tls.Certificate

	httpSrv *http.Server
	closed  bool

	signer      *tokenSigner // access tokens and the API key set
	tokenFails  *ratelimit.Failures
	keySetMu    sync.Mutex
	keySetCache atomic.Pointer[signedKeySet]
	shared      *shared // replicas on PostgreSQL; nil otherwise

	rotStop, rotDone chan struct{} // the rotation timer (rotationTimer)
	rotRearm         chan struct{}
}

// serverState is what a reload replaces, swapped whole.
type serverState struct {
	auth     *authority.Authority
	step     http.Handler
	settings *Settings
	oids     identity.OIDs
	roots    *x509.CertPool
	inters   *x509.CertPool     // the CA's own intermediates, for verifying peers
	verifier *identity.Verifier // the token endpoint's check of client certificates

	caJSON         []certJSON // the PEM JSON of the intermediates and roots
	tlsOptionsJSON []byte     // nil when step-ca has none

	rot *rotationState // the CA generations (rotation.go)
}

type certJSON struct {
	cert *x509.Certificate
	json []byte
}

type serverConfig struct {
	logger       *slog.Logger
	maxBodyBytes int64
	stepDB       bool
	storeOpts    []store.Option
	renewalGrace time.Duration
	clock        clock.Clock
	maxInFlight  int

	accessTokenTTL time.Duration
	keySetValidity time.Duration
	failRate       float64
	failBurst      int
	postgres       string        // DSN; "" for db/mcpca.db
	configPoll     time.Duration // replicas: shared configuration poll
}

// Option configures Open.
type Option interface{ apply(*serverConfig) }

type optionFunc func(*serverConfig)

func (f optionFunc) apply(c *serverConfig) { f(c) }

// WithLogger sets the logger for issuance, renewal and revocation records.
// The default writes JSON lines to stderr.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(c *serverConfig) { c.logger = l }) }

// WithStepCADatabase makes the CA use step-ca's own bbolt driver on
// Layout.DB (db/ca.db) instead of mcpca's store on Layout.Store
// (db/mcpca.db): one fsync per write and used tokens kept forever. It is
// there for comparison; the two files are separate and neither is migrated
// into the other.
func WithStepCADatabase() Option { return optionFunc(func(c *serverConfig) { c.stepDB = true }) }

// WithStoreOptions passes options to mcpca's store (ignored with
// WithStepCADatabase).
func WithStoreOptions(opts ...store.Option) Option {
	return optionFunc(func(c *serverConfig) { c.storeOpts = append(c.storeOpts, opts...) })
}

// ClockOption is WithClock: an Option of Open and a MintOption of the
// minting functions alike, so a program passes its one clock everywhere.
type ClockOption struct{ c clock.Clock }

func (o ClockOption) apply(cfg *serverConfig)   { cfg.clock = o.c }
func (o ClockOption) applyMint(cfg *mintConfig) { cfg.clock = o.c }

// WithClock sets the clock (default the system clock). For Open: the clock
// of mcpca's own decisions (token lifetimes, the renewal grace, peer
// certificate validity) and of its store; step-ca's authority keeps the
// system clock for what it checks and signs itself, so tests move this
// clock forward, not back. For MintToken, NewMinter and MintRevokeToken:
// the time tokens are minted at.
func WithClock(c clock.Clock) ClockOption { return ClockOption{c} }

// WithRenewalGrace sets how long a certificate may still renew after its
// first renewal (default RenewalGrace; 0 refuses at once).
func WithRenewalGrace(d time.Duration) Option {
	return optionFunc(func(c *serverConfig) { c.renewalGrace = max(d, 0) })
}

// WithMaxInFlight bounds the requests that may write (POST /sign, /renew,
// /rekey, /revoke) in flight at once (default DefaultMaxInFlight; 0: no
// bound). Beyond it the CA answers 503 at once, with a Retry-After header
// (seconds) that grows with the excess; mcpca's agents wait that long, with
// jitter, and keep their current certificate meanwhile.
func WithMaxInFlight(n int) Option {
	return optionFunc(func(c *serverConfig) { c.maxInFlight = max(n, 0) })
}

// WithAccessTokenTTL sets the lifetime of the token endpoint's access
// tokens (default DefaultAccessTokenTTL), cut to the client certificate's
// remaining life.
func WithAccessTokenTTL(d time.Duration) Option {
	return optionFunc(func(c *serverConfig) { c.accessTokenTTL = d })
}

// WithKeySetValidity sets how long a signed API key set stays good
// (default DefaultKeySetValidity): the longest a revoked key stays
// accepted by a server that cannot reach the CA.
func WithKeySetValidity(d time.Duration) Option {
	return optionFunc(func(c *serverConfig) { c.keySetValidity = d })
}

// WithTokenFailureLimit sets the failed token requests a source (IP
// address) may make: burst at once, then perSecond a second (default 20
// and 2). Past it, its token requests get 429 until the budget refills.
func WithTokenFailureLimit(perSecond float64, burst int) Option {
	return optionFunc(func(c *serverConfig) { c.failRate, c.failBurst = perSecond, burst })
}

// WithMaxBodyBytes bounds request bodies (default DefaultMaxBodyBytes).
func WithMaxBodyBytes(n int64) Option {
	return optionFunc(func(c *serverConfig) { c.maxBodyBytes = n })
}

// Open loads the CA in dir: it takes the directory lock (failing at once if
// another process serves it), checks the password, opens the database
// (mcpca's store, db/mcpca.db, unless WithStepCADatabase) and builds
// step-ca's authority.
func Open(dir string, password []byte, opts ...Option) (*Server, error) {
	cfg := serverConfig{maxBodyBytes: DefaultMaxBodyBytes, renewalGrace: RenewalGrace, maxInFlight: DefaultMaxInFlight, configPoll: DefaultConfigPoll,
		accessTokenTTL: DefaultAccessTokenTTL, keySetValidity: DefaultKeySetValidity, failRate: 2, failBurst: 20}
	for _, o := range opts {
		o.apply(&cfg)
	}
	switch {
	case cfg.accessTokenTTL < time.Second || cfg.accessTokenTTL > time.Hour:
		return nil, errorf("access token lifetime %s is outside [1s, 1h]", cfg.accessTokenTTL)
	case cfg.keySetValidity < 10*time.Second || cfg.keySetValidity > time.Hour:
		return nil, errorf("API key set validity %s is outside [10s, 1h]", cfg.keySetValidity)
	case cfg.failRate <= 0 || cfg.failBurst < 1:
		return nil, errorf("token failure limit %v/s, burst %d: both must be positive", cfg.failRate, cfg.failBurst)
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	cfg.clock = clock.Or(cfg.clock)
	cfg.storeOpts = append([]store.Option{store.WithClock(cfg.clock)}, cfg.storeOpts...)
	l := Layout{dir}
	if _, err := LoadSettings(dir); err != nil {
		return nil, err
	}
	lock, err := lockDir(l.LockFile())
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, layout: l, password: password, cfg: cfg, lock: lock,
		admission: admission.New(cfg.maxInFlight, cfg.clock), tokenFails: ratelimit.New(cfg.failRate, cfg.failBurst)}
	if _, err := os.Stat(l.RootKey()); err == nil {
		// Serving signs with the intermediate only: the root key here is
		// exposed to whoever compromises this host, for nothing.
		cfg.logger.Warn("the root CA key sits in the CA directory, and serving never uses it: move it offline (see docs/operations.md); keep it for signing a new intermediate",
			"event", "root_key_online", "file", l.RootKey())
	}
	if err := checkPassword(l.IntermediateKey(), password); err != nil {
		lock.unlock()
		return nil, err
	}
	if s.signer, err = loadTokenSigner(l, password); err != nil {
		lock.unlock()
		return nil, err
	}
	stepCfg, err := loadStepConfig(l)
	if err != nil {
		lock.unlock()
		return nil, err
	}
	switch {
	case cfg.stepDB && cfg.postgres != "":
		lock.unlock()
		return nil, errorf("step-ca's database and PostgreSQL are two databases: choose one")
	case cfg.stepDB:
		if s.db, err = db.New(stepCfg.DB); err != nil {
			lock.unlock()
			return nil, errorf("opening database %s: %w", l.DB(), err)
		}
	case cfg.postgres != "":
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s.store, err = store.OpenPostgres(ctx, cfg.postgres, cfg.storeOpts...)
		cancel()
		if err != nil {
			lock.unlock()
			return nil, errorf("%w", err)
		}
		s.db = s.store // every write waits for its commit: the database decides a token's use
		if err := s.syncAtOpen(); err != nil {
			_ = s.store.Shutdown()
			lock.unlock()
			return nil, err
		}
		if stepCfg, err = loadStepConfig(l); err != nil {
			_ = s.store.Shutdown()
			lock.unlock()
			return nil, err
		}
	default:
		if s.store, err = store.Open(l.Store(), cfg.storeOpts...); err != nil {
			lock.unlock()
			return nil, errorf("%w", err)
		}
		s.db = claimingStore{s.store}
	}
	st, err := s.newState(stepCfg)
	if err != nil {
		_ = s.db.Shutdown()
		lock.unlock()
		return nil, err
	}
	s.state.Store(st)
	s.startRotationTimer()
	if s.shared != nil {
		s.shared.stop, s.shared.done = make(chan struct{}), make(chan struct{})
		go s.pollShared()
	}
	return s, nil
}

// checkPassword fails with a clear message when the password does not
// decrypt the issuing key.
func checkPassword(keyFile string, password []byte) error {
	if len(password) == 0 {
		return errorf("no CA password: pass --password-file (or keep the generated secrets/password)")
	}
	if _, err := pemutil.Read(keyFile, pemutil.WithPassword(password)); err != nil {
		if _, statErr := os.Stat(keyFile); statErr != nil {
			return errorf("reading CA key: %w", statErr)
		}
		return errorf("the password does not decrypt %s: wrong password?", keyFile)
	}
	return nil
}

// loadStepConfig reads config/ca.json and points every path at this
// directory, so a CA directory can be moved.
func loadStepConfig(l Layout) (*config.Config, error) {
	b, err := os.ReadFile(l.StepConfig())
	if err != nil {
		return nil, errorf("reading step-ca configuration: %w", err)
	}
	var cfg config.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, errorf("%s is corrupted: %v", l.StepConfig(), err)
	}
	if cfg.AuthorityConfig == nil || len(cfg.AuthorityConfig.Provisioners) == 0 {
		return nil, errorf("%s has no provisioners", l.StepConfig())
	}
	cfg.Root = []string{l.RootCert()}
	cfg.IntermediateCert = l.IntermediateCert()
	cfg.IntermediateKey = l.IntermediateKey()
	cfg.DB = &db.Config{Type: "bbolt", DataSource: l.DB()}
	return &cfg, nil
}

func (s *Server) newState(stepCfg *config.Config) (*serverState, error) {
	if stepCfg.AuthorityConfig.EnableAdmin && s.store != nil {
		// step-ca's admin database runs on its own nosql driver only.
		return nil, errorf("%s enables step-ca's admin API (enableAdmin), which needs step-ca's database: serve with --database step-ca, or remove enableAdmin", s.layout.StepConfig())
	}
	settings, err := LoadSettings(s.dir)
	if err != nil {
		return nil, err
	}
	oids, err := settings.OIDs()
	if err != nil {
		return nil, err
	}
	if stepCfg.CRL != nil && stepCfg.CRL.IDPurl == "" {
		// A directory made before Init wrote idpURL: name this CA's
		// address, not step-ca's default (https://<first DNS name>/1.0/crl).
		stepCfg.CRL.IDPurl = settings.CRLURL()
	}
	rot, err := s.loadRotationState()
	if err != nil {
		return nil, err
	}
	authOpts := []authority.Option{
		authority.WithPassword(s.password),
		authority.WithDatabase(s.db),
		authority.WithQuietInit(),
	}
	if rot.explicit {
		// The issuing intermediate and the trusted roots come from
		// config/rotation.json, not from ca.json's files.
		authOpts = append(authOpts, authority.WithX509Signer(rot.issuing.cert, rot.signer), authority.WithX509RootCerts(rot.file.rootCerts()...))
	}
	auth, err := newAuthority(func() (*authority.Authority, error) {
		return authority.New(stepCfg, authOpts...)
	})
	if err != nil {
		return nil, errorf("starting step-ca authority: %w", err)
	}
	roots := x509.NewCertPool()
	for _, r := range auth.GetRootCertificates() {
		roots.AddCert(r)
	}
	mux := chi.NewRouter()
	api.Route(mux)
	mux.Route("/1.0", func(r chi.Router) { api.Route(r) })
	inters := x509.NewCertPool()
	held := rot.intermediateCerts(auth.GetIntermediateCertificates())
	for _, c := range held {
		inters.AddCert(c)
	}
	bundle, err := trust.NewBundle(auth.GetRootCertificates(), held...)
	if err != nil {
		return nil, errorf("the CA's trust bundle: %w", err)
	}
	verifier, err := identity.NewVerifier(trust.NewBundleStore(bundle), identity.WithTrustDomains(settings.TrustDomain),
		identity.WithOIDs(oids), identity.WithClock(s.cfg.clock), identity.WithLogger(s.cfg.logger))
	if err != nil {
		return nil, errorf("%w", err)
	}
	st := &serverState{auth: auth, step: mux, settings: settings, oids: oids, roots: roots, inters: inters, verifier: verifier, rot: rot}
	for _, c := range append(auth.GetIntermediateCertificates(), auth.GetRootCertificates()...) {
		st.caJSON = append(st.caJSON, certJSON{c, pemJSON(c)})
	}
	if o := auth.GetTLSOptions(); o != nil {
		if st.tlsOptionsJSON, err = json.Marshal(o); err != nil {
			return nil, errorf("encoding the TLS options: %w", err)
		}
	}
	return st, nil
}

// Reload re-reads ca.json and mcpca.json (new provisioners, changed limits)
// and swaps the authority without dropping the listener or the database.
// On error the running configuration stays.
//
// A replica on PostgreSQL first publishes its files to the other replicas
// when they changed here (see WithPostgres).
func (s *Server) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shared != nil {
		if err := s.publishLocal(); err != nil {
			return err
		}
	}
	return s.reloadLocked("signal")
}

// reloadLocked swaps in the authority of the files as they are now. s.mu
// is held.
func (s *Server) reloadLocked(by string) error {
	stepCfg, err := loadStepConfig(s.layout)
	if err != nil {
		return err
	}
	st, err := s.newState(stepCfg)
	if err != nil {
		return err
	}
	old := s.state.Swap(st)
	old.auth.CloseForReload()
	s.rotationApplied(old, st)
	s.cfg.logger.Info("configuration reloaded", "event", "reload", "provisioners", len(stepCfg.AuthorityConfig.Provisioners),
		"settings", st.settings.Digest(), "by", by)
	return nil
}

// Settings returns the settings in force.
func (s *Server) Settings() *Settings { return s.state.Load().settings }

// Store returns mcpca's store, or nil with WithStepCADatabase.
func (s *Server) Store() *store.Store { return s.store }

// Authority returns step-ca's authority in force (for tests and tools).
func (s *Server) Authority() *authority.Authority { return s.state.Load().auth }

// TLSConfig is the CA's server TLS configuration: TLS 1.3, a server
// certificate for the CA's DNS names issued by its own intermediate and
// refreshed before it expires, and optional client certificates for renewal
// and revocation over mTLS. The TLS layer only requests the client
// certificate; the handlers that act on it verify it (verifyPeer) on every
// request, so a refusal is an HTTP answer that names the problem (expired,
// another CA) rather than a bare TLS alert.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: s.getCertificate,
		ClientAuth:     tls.RequestClientCert,
	}
}

func (s *Server) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.tlsMu.Lock()
	defer s.tlsMu.Unlock()
	if c := s.tlsCert; c != nil && c.Leaf != nil {
		life := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
		if s.cfg.clock.Now().Before(c.Leaf.NotBefore.Add(life * 2 / 3)) {
			return c, nil
		}
	}
	c, err := s.state.Load().auth.GetTLSCertificate()
	if err != nil {
		return nil, errorf("issuing the CA's TLS certificate: %w", err)
	}
	if c.Leaf == nil && len(c.Certificate) > 0 {
		c.Leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	s.tlsCert = c
	return c, nil
}

// Handler is the CA's HTTP API: step-ca's, with mcpca's /sign, /renew,
// /rekey and /revoke, a body limit on every request, and the JSON log.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			// Admission first: a shed request costs the CA nothing more.
			wait, ok := s.admission.Admit()
			if !ok {
				refuseBusy(w, wait, s.admission.Max())
				return
			}
			defer s.admission.Release()
		}
		st := s.state.Load()
		if r.ContentLength > s.cfg.maxBodyBytes {
			writeError(w, http.StatusRequestEntityTooLarge, errorf("request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, s.cfg.maxBodyBytes))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.maxBodyBytes)
		if s.serveOAuth(w, r, st) {
			return
		}
		ctx := authority.NewContext(r.Context(), st.auth)
		ctx = db.NewContext(ctx, s.db)
		r = r.WithContext(ctx)
		if p := strings.TrimPrefix(r.URL.Path, "/1.0"); p == "/health" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			s.handleHealth(w, r)
			return
		}
		if (r.Method == http.MethodPost || strings.TrimPrefix(r.URL.Path, "/1.0") == "/crl") && s.unavailable(w, r) {
			return
		}
		if s.store != nil && s.store.Backend() == "bbolt" && r.Method != http.MethodGet && r.Method != http.MethodHead {
			// Only requests that may write (step-ca's API writes on POST
			// only) wait for the store: a GET of the roots or the CRL never
			// waits for other requests' commits.
			dw := &durableWriter{ResponseWriter: w, st: s.store, logger: s.cfg.logger}
			w = dw
			// A handler that wrote nothing still gets its writes synced
			// before net/http answers for it.
			defer dw.ensure()
		}
		if r.Method == http.MethodPost {
			switch r.URL.Path {
			case "/sign", "/1.0/sign":
				s.handleSign(w, r, st)
				return
			case "/renew", "/1.0/renew":
				s.handleRenew(w, r, st, false)
				return
			case "/rekey", "/1.0/rekey":
				s.handleRenew(w, r, st, true)
				return
			case "/revoke", "/1.0/revoke":
				s.handleRevoke(w, r, st)
				return
			}
		}
		if !st.settings.PublishEncryptedKeys && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			switch p := strings.TrimPrefix(r.URL.Path, "/1.0"); {
			case p == "/provisioners":
				serveProvisionersWithoutKeys(w, r, st)
				return
			case strings.HasPrefix(p, "/provisioners/"):
				writeError(w, http.StatusNotFound, errorf("this CA does not publish its provisioners' encrypted keys: to serve them for the step CLI's `step ca token`, set \"publishEncryptedKeys\": true in its config/mcpca.json (or mcpca init --publish-encrypted-keys) and reload it (SIGHUP)"))
				return
			}
		}
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.TrimPrefix(r.URL.Path, "/1.0") == "/crl" && wantsCRLSet(r) {
			s.serveCRLSet(w, r, st)
			return
		}
		if !stepRouteAllowed(r) {
			refuseRoute(w, r)
			return
		}
		st.step.ServeHTTP(w, r)
	})
}

// serveOAuth answers the authorization server's endpoints (metadata,
// JWKS, token) and the API key endpoints, and reports whether r was one.
// None goes through durableWriter: the token endpoint writes nothing, and
// the API key writes wait for their commit.
func (s *Server) serveOAuth(w http.ResponseWriter, r *http.Request, st *serverState) bool {
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch r.URL.Path {
	case MetadataPath:
		if !get {
			return false
		}
		writeJSON(w, http.StatusOK, s.metadata(st))
	case JWKSPath:
		if !get {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(s.signer.jwks)
	case TokenPath:
		s.handleToken(w, r, st)
	case APIKeysPath:
		switch {
		case get:
			s.serveKeySet(w, r, st)
		case r.Method == http.MethodPost:
			s.handleAPIKeys(w, r, st)
		default:
			return false
		}
	default:
		return false
	}
	return true
}

// serveProvisionersWithoutKeys answers GET /provisioners as step-ca does
// (same shape, same paging), without the JWK provisioners' encrypted keys.
func serveProvisionersWithoutKeys(w http.ResponseWriter, r *http.Request, st *serverState) {
	cursor, limit, err := api.ParseCursor(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, errorf("limit %q is not an integer", r.URL.Query().Get("limit")))
		return
	}
	list, next, err := st.auth.GetProvisioners(cursor, limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, errorf("listing provisioners: %v", err))
		return
	}
	out := make(provisioner.List, 0, len(list))
	for _, p := range list {
		if j, ok := p.(*provisioner.JWK); ok && j.EncryptedKey != "" {
			c := *j
			c.EncryptedKey = ""
			p = &c
		}
		out = append(out, p)
	}
	writeJSON(w, http.StatusOK, api.ProvisionersResponse{Provisioners: out, NextCursor: next})
}

// Serve accepts connections on ln (plain TCP; TLS is added here) until
// Shutdown. It returns http.ErrServerClosed after a clean shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.httpSrv = &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.logger.Handler(), slog.LevelDebug),
	}
	srv := s.httpSrv
	s.mu.Unlock()
	return srv.Serve(tls.NewListener(ln, srv.TLSConfig))
}

// ListenAndServe listens on the address from the settings.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.Settings().Address)
	if err != nil {
		return errorf("listening on %s: %w", s.Settings().Address, err)
	}
	return s.Serve(ln)
}

// Close stops serving (waiting up to ctx for requests in flight), shuts the
// authority and database down and releases the directory lock.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.shared != nil && s.shared.stop != nil {
		close(s.shared.stop)
		s.mu.Unlock()
		<-s.shared.done // it takes s.mu to apply
		s.mu.Lock()
	}
	if s.rotStop != nil {
		close(s.rotStop)
		s.mu.Unlock()
		<-s.rotDone // it takes s.mu to switch
		s.mu.Lock()
	}
	var errs []error
	if s.httpSrv != nil {
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.store != nil {
		commits, writes, rts := s.store.Counters()
		s.cfg.logger.Info("store closing", "event", "store", "backend", s.store.Backend(), "commits", commits, "writes", writes, "round_trips", rts)
	}
	if st := s.state.Load(); st != nil {
		if err := st.auth.Shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	s.lock.unlock()
	return errors.Join(errs...)
}

// writeError writes step-ca's JSON error shape: {"status": N, "message": "..."}.
func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"status": status, "message": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readJSON decodes a bounded body, naming an oversized body clearly.
func readJSON(r *http.Request, v any) (int, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, errorf("request body exceeds the limit of %d bytes", mbe.Limit)
		}
		return http.StatusBadRequest, errorf("reading request body: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return http.StatusBadRequest, errorf("request body is not valid JSON: %v", err)
	}
	return 0, nil
}
