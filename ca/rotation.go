package ca

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/internal/atomicfile"
	"github.com/mcpca/mcpca/internal/pemfile"
	"github.com/mcpca/mcpca/internal/strictjson"
)

// Rotation
//
// A CA directory holds generations of CAs: roots (all trusted, published
// in certs/root_ca.crt and at /roots) and intermediates (all trusted for
// the certificates they issued; exactly one issues at any moment). Before
// the first rotation the directory's one root and one intermediate are
// generation 1. RotateIntermediate and RotateRoot add a generation and
// record it in config/rotation.json, with each intermediate's certificate,
// its key (encrypted with the CA password, as secrets/intermediate_ca_key
// is) and the times it issues from and may be retired after; Retire drops
// the generations past their time. A running CA applies the file on its
// reload (the rotate commands send SIGHUP) and switches issuing on its own
// clock when an intermediate's issuesFrom comes; replicas on PostgreSQL
// share the file like config/ca.json (see WithPostgres).

// DefaultSwitchAfter is how long RotateRoot waits by default before the
// new root's intermediate issues: twice the agents' trust bundle refresh
// (agent.DefaultBundleInterval, 1h), so every agent that can reach the CA
// holds the new root before any peer presents a certificate chaining to
// it.
const DefaultSwitchAfter = 2 * time.Hour

// DefaultIntermediateSwitchAfter is how long RotateIntermediate waits by
// default before the new intermediate issues: twice the refresh of the
// verifiers' CRL fetchers (identity/trust.DefaultRefreshInterval, 5m).
// Its CRL is in the CRL set from the start, and a verifier that checks
// CRLs (fail-closed) refuses a certificate whose issuer has no CRL in the
// set it holds, so peers must fetch the set before the first certificate
// of the new intermediate reaches them. Without CRL checking anywhere, 0
// (with WithForce) switches at once.
const DefaultIntermediateSwitchAfter = 10 * time.Minute

// MaxGenerations bounds the intermediates a CA holds at once: each has a
// CRL in the CRL set (identity/trust.MaxCRLsPerSet).
const MaxGenerations = 8

// RotationFile is config/rotation.json, the CA generations; absent until
// the first rotation.
func (l Layout) RotationFile() string { return l.p("config", "rotation.json") }

// rotationFile is the JSON of config/rotation.json.
type rotationFile struct {
	Roots         []*rootGeneration         `json:"roots"`
	Intermediates []*intermediateGeneration `json:"intermediates"`
}

type rootGeneration struct {
	Generation int    `json:"generation"`
	Cert       string `json:"cert"` // PEM
	// KeyFile is where the root's encrypted key was written, relative to
	// the CA directory unless absolute; it may have moved offline since.
	KeyFile     string    `json:"keyFile,omitempty"`
	RetireAfter time.Time `json:"retireAfter,omitzero"`

	cert *x509.Certificate
}

type intermediateGeneration struct {
	Generation  int       `json:"generation"`
	Root        int       `json:"root"` // generation of the root that signed it
	Cert        string    `json:"cert"` // PEM
	Key         string    `json:"key"`  // PEM, encrypted with the CA password
	IssuesFrom  time.Time `json:"issuesFrom"`
	RetireAfter time.Time `json:"retireAfter,omitzero"`

	cert *x509.Certificate
}

// loadRotation reads config/rotation.json, or, before the first rotation,
// makes generation 1 of the directory's root and intermediate files
// (explicit false).
func loadRotation(l Layout) (rf *rotationFile, explicit bool, err error) {
	b, err := os.ReadFile(l.RotationFile())
	if errors.Is(err, os.ErrNotExist) {
		rf, err := implicitRotation(l)
		return rf, false, err
	}
	if err != nil {
		return nil, false, errorf("reading %s: %w", l.RotationFile(), err)
	}
	rf, err = parseRotation(b)
	if err != nil {
		return nil, false, errorf("%s: %w", l.RotationFile(), err)
	}
	return rf, true, nil
}

func implicitRotation(l Layout) (*rotationFile, error) {
	rootPEM, err := os.ReadFile(l.RootCert())
	if err != nil {
		return nil, errorf("reading %s: %w", l.RootCert(), err)
	}
	roots, err := pemfile.ParseCertificates(rootPEM, pemfile.SkipOthers)
	if err != nil || len(roots) == 0 {
		return nil, errorf("%s holds no certificate: %v", l.RootCert(), err)
	}
	interPEM, err := os.ReadFile(l.IntermediateCert())
	if err != nil {
		return nil, errorf("reading %s: %w", l.IntermediateCert(), err)
	}
	inters, err := pemfile.ParseCertificates(interPEM, pemfile.SkipOthers)
	if err != nil || len(inters) == 0 {
		return nil, errorf("%s holds no certificate: %v", l.IntermediateCert(), err)
	}
	key, err := os.ReadFile(l.IntermediateKey())
	if err != nil {
		return nil, errorf("reading %s: %w", l.IntermediateKey(), err)
	}
	rf := &rotationFile{}
	for i, r := range roots {
		rg := &rootGeneration{Generation: i + 1, Cert: string(pemfile.EncodeCertificates(r)), cert: r}
		if i == 0 {
			rg.KeyFile = filepath.Join("secrets", "root_ca_key")
		}
		rf.Roots = append(rf.Roots, rg)
	}
	ig := &intermediateGeneration{Generation: 1, Cert: string(pemfile.EncodeCertificates(inters[0])), Key: string(key),
		IssuesFrom: inters[0].NotBefore.UTC(), cert: inters[0]}
	for _, r := range rf.Roots {
		if inters[0].CheckSignatureFrom(r.cert) == nil {
			ig.Root = r.Generation
		}
	}
	if ig.Root == 0 {
		return nil, errorf("%s is not signed by a root of %s", l.IntermediateCert(), l.RootCert())
	}
	rf.Intermediates = []*intermediateGeneration{ig}
	return rf, nil
}

// parseRotation parses and checks the bytes of config/rotation.json.
func parseRotation(b []byte) (*rotationFile, error) {
	var rf rotationFile
	if err := strictjson.Unmarshal(b, &rf); err != nil {
		return nil, errorf("corrupted: %v", err)
	}
	if len(rf.Roots) == 0 || len(rf.Intermediates) == 0 {
		return nil, errorf("needs at least one root and one intermediate")
	}
	if len(rf.Intermediates) > MaxGenerations || len(rf.Roots) > MaxGenerations {
		return nil, errorf("holds more than %d generations", MaxGenerations)
	}
	roots := map[int]*rootGeneration{}
	for _, r := range rf.Roots {
		if r == nil || r.Generation < 1 || roots[r.Generation] != nil {
			return nil, errorf("a root has a missing or repeated generation")
		}
		c, err := oneCert(r.Cert)
		if err != nil {
			return nil, errorf("root generation %d: %w", r.Generation, err)
		}
		if !c.IsCA || c.CheckSignatureFrom(c) != nil {
			return nil, errorf("root generation %d is not a self-signed CA certificate", r.Generation)
		}
		r.cert = c
		roots[r.Generation] = r
	}
	seen := map[int]bool{}
	for _, ig := range rf.Intermediates {
		if ig == nil || ig.Generation < 1 || seen[ig.Generation] {
			return nil, errorf("an intermediate has a missing or repeated generation")
		}
		seen[ig.Generation] = true
		c, err := oneCert(ig.Cert)
		if err != nil {
			return nil, errorf("intermediate generation %d: %w", ig.Generation, err)
		}
		root := roots[ig.Root]
		if root == nil {
			return nil, errorf("intermediate generation %d names root generation %d, which is not held", ig.Generation, ig.Root)
		}
		if !c.IsCA || c.CheckSignatureFrom(root.cert) != nil {
			return nil, errorf("intermediate generation %d is not a CA certificate signed by root generation %d", ig.Generation, ig.Root)
		}
		if !ig.IssuesFrom.Before(c.NotAfter) {
			return nil, errorf("intermediate generation %d issues from %s, not before its certificate expires (%s)", ig.Generation,
				ig.IssuesFrom.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
		}
		if blk, _ := pem.Decode([]byte(ig.Key)); blk == nil {
			return nil, errorf("intermediate generation %d has no PEM key", ig.Generation)
		}
		ig.cert = c
	}
	return &rf, nil
}

func oneCert(p string) (*x509.Certificate, error) {
	l, err := pemfile.ParseCertificates([]byte(p), pemfile.RefuseOthers)
	if err != nil {
		return nil, err
	}
	if len(l) != 1 {
		return nil, errorf("want one PEM certificate, got %d", len(l))
	}
	return l[0], nil
}

// issuing returns the intermediate that issues at now: the latest
// issuesFrom not after now (or the earliest, when all are in the future).
func (rf *rotationFile) issuing(now time.Time) *intermediateGeneration {
	var best *intermediateGeneration
	for _, ig := range rf.Intermediates {
		if ig.IssuesFrom.After(now) {
			continue
		}
		if best == nil || ig.IssuesFrom.After(best.IssuesFrom) || (ig.IssuesFrom.Equal(best.IssuesFrom) && ig.Generation > best.Generation) {
			best = ig
		}
	}
	if best == nil {
		for _, ig := range rf.Intermediates {
			if best == nil || ig.IssuesFrom.Before(best.IssuesFrom) {
				best = ig
			}
		}
	}
	return best
}

// nextSwitch returns the first issuesFrom after now, or zero.
func (rf *rotationFile) nextSwitch(now time.Time) time.Time {
	var next time.Time
	for _, ig := range rf.Intermediates {
		if ig.IssuesFrom.After(now) && (next.IsZero() || ig.IssuesFrom.Before(next)) {
			next = ig.IssuesFrom
		}
	}
	return next
}

func (rf *rotationFile) rootCerts() []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(rf.Roots))
	for _, r := range rf.Roots {
		out = append(out, r.cert)
	}
	return out
}

func (rf *rotationFile) root(gen int) *rootGeneration {
	for _, r := range rf.Roots {
		if r.Generation == gen {
			return r
		}
	}
	return nil
}

func (rf *rotationFile) maxGen() (root, inter int) {
	for _, r := range rf.Roots {
		root = max(root, r.Generation)
	}
	for _, ig := range rf.Intermediates {
		inter = max(inter, ig.Generation)
	}
	return root, inter
}

// save writes config/rotation.json and certs/root_ca.crt (every trusted
// root) together.
func (rf *rotationFile) save(l Layout) error {
	b, err := json.MarshalIndent(rf, "", "  ")
	if err != nil {
		return errorf("encoding %s: %v", l.RotationFile(), err)
	}
	return atomicfile.WriteFiles(
		atomicfile.File{Path: l.RotationFile(), Data: append(b, '\n'), Mode: 0o600},
		atomicfile.File{Path: l.RootCert(), Data: pemfile.EncodeCertificates(rf.rootCerts()...), Mode: 0o644},
	)
}

// syncRootBundle rewrites certs/root_ca.crt when it does not hold exactly
// the trusted roots (a replica that applied another's rotation).
func (rf *rotationFile) syncRootBundle(l Layout) error {
	want := pemfile.EncodeCertificates(rf.rootCerts()...)
	if have, err := os.ReadFile(l.RootCert()); err == nil && bytes.Equal(have, want) {
		return nil
	}
	return atomicfile.WriteFile(l.RootCert(), want, 0o644)
}

func (ig *intermediateGeneration) signer(password []byte) (crypto.Signer, error) {
	k, err := pemutil.Parse([]byte(ig.Key), pemutil.WithPassword(password))
	if err != nil {
		return nil, errorf("the CA password does not decrypt the key of intermediate generation %d: wrong password?", ig.Generation)
	}
	s, ok := k.(crypto.Signer)
	if !ok || !publicKeysEqual(s.Public(), ig.cert.PublicKey) {
		return nil, errorf("the key of intermediate generation %d is not the key of its certificate", ig.Generation)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// RotateOption configures the rotation functions.
type RotateOption interface{ applyRotate(*rotateConfig) }

type rotateConfig struct {
	clock       clock.Clock
	overlap     time.Duration
	switchAfter time.Duration
	switchSet   bool
	rootKey     string
	rootKeyOut  string
	force       bool
}

type rotateFunc func(*rotateConfig)

func (f rotateFunc) applyRotate(c *rotateConfig) { f(c) }

func (o ClockOption) applyRotate(c *rotateConfig) { c.clock = o.c }

// WithOverlap sets how long the replaced CA stays trusted after the new
// intermediate starts issuing (default, and least, the CA's longest
// certificate lifetime, Settings.MaxTTL: every certificate the old one
// issued expires within it).
func WithOverlap(d time.Duration) RotateOption {
	return rotateFunc(func(c *rotateConfig) { c.overlap = d })
}

// WithSwitchAfter sets how long after the rotation the new intermediate
// starts issuing (default DefaultIntermediateSwitchAfter for
// RotateIntermediate, DefaultSwitchAfter for RotateRoot); shorter than the
// default needs WithForce.
func WithSwitchAfter(d time.Duration) RotateOption {
	return rotateFunc(func(c *rotateConfig) { c.switchAfter, c.switchSet = d, true })
}

// WithRootKeyFile names the encrypted key of the root that signs the new
// intermediate, when it is not where it was written (kept offline).
func WithRootKeyFile(path string) RotateOption {
	return rotateFunc(func(c *rotateConfig) { c.rootKey = path })
}

// WithRootKeyOut is where RotateRoot writes the new root's encrypted key
// (a new file; default secrets/root_ca_key.gN).
func WithRootKeyOut(path string) RotateOption {
	return rotateFunc(func(c *rotateConfig) { c.rootKeyOut = path })
}

// WithForce lets Retire drop generations before their retire time, and a
// rotation switch sooner than its default: after a compromise.
func WithForce() RotateOption { return rotateFunc(func(c *rotateConfig) { c.force = true }) }

func rotateOptions(opts []RotateOption) rotateConfig {
	var c rotateConfig
	for _, o := range opts {
		o.applyRotate(&c)
	}
	c.clock = clock.Or(c.clock)
	return c
}

// CAGeneration describes one held CA certificate (RotationStatus).
type CAGeneration struct {
	Kind        string // "root" or "intermediate"
	Generation  int
	Subject     string
	Fingerprint string // SHA-256 of the DER, hex
	NotAfter    time.Time
	Root        int // intermediates: the root generation that signed it
	Issuing     bool
	IssuesFrom  time.Time // intermediates
	RetireAfter time.Time // zero: not replaced
}

// RotationStatus is what a CA directory holds: every trusted root and
// intermediate, which one issues, and when the replaced ones may go.
type RotationStatus struct {
	Now           time.Time
	Roots         []CAGeneration
	Intermediates []CAGeneration
	NextSwitch    time.Time // zero when none is pending
}

func (rf *rotationFile) status(now time.Time) *RotationStatus {
	st := &RotationStatus{Now: now, NextSwitch: rf.nextSwitch(now)}
	iss := rf.issuing(now)
	for _, r := range rf.Roots {
		st.Roots = append(st.Roots, CAGeneration{Kind: "root", Generation: r.Generation, Subject: r.cert.Subject.CommonName,
			Fingerprint: fingerprint(r.cert), NotAfter: r.cert.NotAfter, RetireAfter: r.RetireAfter})
	}
	for _, ig := range rf.Intermediates {
		st.Intermediates = append(st.Intermediates, CAGeneration{Kind: "intermediate", Generation: ig.Generation, Subject: ig.cert.Subject.CommonName,
			Fingerprint: fingerprint(ig.cert), NotAfter: ig.cert.NotAfter, Root: ig.Root, Issuing: ig == iss,
			IssuesFrom: ig.IssuesFrom, RetireAfter: ig.RetireAfter})
	}
	return st
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// ReadRotationStatus reports the CA generations of dir (WithClock sets
// the time it is judged at).
func ReadRotationStatus(dir string, opts ...RotateOption) (*RotationStatus, error) {
	c := rotateOptions(opts)
	if _, err := LoadSettings(dir); err != nil {
		return nil, err
	}
	rf, _, err := loadRotation(Layout{dir})
	if err != nil {
		return nil, err
	}
	return rf.status(c.clock.Now()), nil
}

// prepareRotation loads what a rotation needs and refuses one while
// another is under way.
func prepareRotation(dir string, password []byte, c rotateConfig, what string) (*Settings, *rotationFile, *intermediateGeneration, error) {
	s, err := LoadSettings(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	l := Layout{dir}
	rf, _, err := loadRotation(l)
	if err != nil {
		return nil, nil, nil, err
	}
	now := c.clock.Now()
	iss := rf.issuing(now)
	if next := rf.nextSwitch(now); !next.IsZero() {
		return nil, nil, nil, errorf("rotate %s: a rotation is under way: intermediate generation %d issues from %s; wait for it (mcpca rotate status)",
			what, rf.issuingAt(next).Generation, next.UTC().Format(time.RFC3339))
	}
	if len(rf.Intermediates) >= MaxGenerations {
		return nil, nil, nil, errorf("rotate %s: the CA holds %d intermediates already, the most it may: retire the old ones first (mcpca rotate retire)", what, len(rf.Intermediates))
	}
	if _, err := iss.signer(password); err != nil {
		return nil, nil, nil, err // refuse before writing anything
	}
	overlap := c.overlap
	if overlap == 0 {
		overlap = s.MaxTTL.Duration
	}
	if overlap < s.MaxTTL.Duration {
		return nil, nil, nil, errorf("rotate %s: --overlap %s is shorter than the CA's longest certificate lifetime (%s): certificates the old CA issued just before the switch would outlive its trust", what, c.overlap, s.MaxTTL.Duration)
	}
	return s, rf, iss, nil
}

func (rf *rotationFile) issuingAt(t time.Time) *intermediateGeneration { return rf.issuing(t) }

// rootSigner decrypts the key of root generation gen.
func rootSigner(l Layout, rg *rootGeneration, file string, password []byte) (crypto.Signer, error) {
	if file == "" {
		file = rg.KeyFile
		if file != "" && !filepath.IsAbs(file) {
			file = filepath.Join(l.Dir, file)
		}
	}
	if file == "" {
		return nil, errorf("the key of root generation %d is not recorded: pass --root-key FILE", rg.Generation)
	}
	if _, err := os.Stat(file); err != nil {
		return nil, errorf("the key of root generation %d is not at %s (kept offline?): pass --root-key FILE", rg.Generation, file)
	}
	k, err := pemutil.Read(file, pemutil.WithPassword(password))
	if err != nil {
		return nil, errorf("the CA password does not decrypt %s: wrong password?", file)
	}
	s, ok := k.(crypto.Signer)
	if !ok || !publicKeysEqual(s.Public(), rg.cert.PublicKey) {
		return nil, errorf("%s is not the key of root generation %d (%s)", file, rg.Generation, rg.cert.Subject.CommonName)
	}
	return s, nil
}

func generationName(base string, gen int) string {
	if gen == 1 {
		return base
	}
	return fmt.Sprintf("%s G%d", base, gen)
}

// newIntermediate makes intermediate generation gen under root rg.
func newIntermediate(s *Settings, rg *rootGeneration, rootKey crypto.Signer, gen int, t0, issuesFrom time.Time, password []byte) (*intermediateGeneration, error) {
	ttl := min(5*365*24*time.Hour, rg.cert.NotAfter.Sub(t0))
	if ttl < 2*s.MaxTTL.Duration {
		return nil, errorf("root generation %d expires at %s, too soon to sign an intermediate: rotate the root (mcpca rotate root)", rg.Generation, rg.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, cert, err := newCACert(generationName(s.Name+" Intermediate CA", gen), t0, ttl, 0, rg.cert, rootKey)
	if err != nil {
		return nil, errorf("intermediate certificate: %w", err)
	}
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true), pemutil.WithPassword(password))
	if err != nil {
		return nil, errorf("encrypting the intermediate key: %v", err)
	}
	return &intermediateGeneration{Generation: gen, Root: rg.Generation, Cert: string(pemfile.EncodeCertificates(cert)),
		Key: string(pem.EncodeToMemory(block)), IssuesFrom: issuesFrom.UTC(), cert: cert}, nil
}

// RotateIntermediate makes a new intermediate signed by the root of the
// one issuing now: peers already trust that root. It is held at once (its
// CRL is in the CRL set) and issues after the switch delay
// (WithSwitchAfter, default DefaultIntermediateSwitchAfter; 0 with
// WithForce: at once). The replaced intermediate stays trusted for the
// overlap after the switch (WithOverlap). A running CA applies it when it
// reloads (SIGHUP) and switches on its clock.
func RotateIntermediate(dir string, password []byte, opts ...RotateOption) (*RotationStatus, error) {
	c := rotateOptions(opts)
	if !c.switchSet {
		c.switchAfter = DefaultIntermediateSwitchAfter
	}
	if c.switchAfter < 0 {
		return nil, errorf("rotate intermediate: --switch-after %s is negative", c.switchAfter)
	}
	if c.switchAfter < DefaultIntermediateSwitchAfter && !c.force {
		return nil, errorf("rotate intermediate: --switch-after %s is shorter than %s, twice the verifiers' CRL refresh (5m): peers that check CRLs would refuse certificates of the new intermediate until they fetch its CRL; pass --force if none checks CRLs or all refresh sooner", c.switchAfter, DefaultIntermediateSwitchAfter)
	}
	s, rf, iss, err := prepareRotation(dir, password, c, "intermediate")
	if err != nil {
		return nil, err
	}
	l := Layout{dir}
	rg := rf.root(iss.Root)
	rootKey, err := rootSigner(l, rg, c.rootKey, password)
	if err != nil {
		return nil, err
	}
	now := c.clock.Now()
	_, gen := rf.maxGen()
	ig, err := newIntermediate(s, rg, rootKey, gen+1, now.Add(-time.Minute).Truncate(time.Second), now.Add(c.switchAfter).Truncate(time.Second), password)
	if err != nil {
		return nil, err
	}
	overlap := max(c.overlap, s.MaxTTL.Duration)
	iss.RetireAfter = ig.IssuesFrom.Add(overlap)
	rf.Intermediates = append(rf.Intermediates, ig)
	if err := rf.save(l); err != nil {
		return nil, err
	}
	return rf.status(now), nil
}

// RotateRoot makes a new root and an intermediate under it. The new root
// is trusted at once (certs/root_ca.crt, /roots, the bundles agents
// fetch); its intermediate issues only after the switch delay
// (WithSwitchAfter), so every peer holds the new root before it meets a
// certificate chaining to it. The old root and intermediate stay trusted
// for the overlap after the switch.
func RotateRoot(dir string, password []byte, opts ...RotateOption) (*RotationStatus, error) {
	c := rotateOptions(opts)
	if !c.switchSet {
		c.switchAfter = DefaultSwitchAfter
	}
	if c.switchAfter < 0 {
		return nil, errorf("rotate root: --switch-after %s is negative", c.switchAfter)
	}
	if c.switchAfter < DefaultSwitchAfter && !c.force {
		return nil, errorf("rotate root: --switch-after %s is shorter than %s, twice the agents' trust bundle refresh (1h): peers that have not fetched the new root would refuse certificates of its intermediate; pass --force if every peer refreshes sooner", c.switchAfter, DefaultSwitchAfter)
	}
	s, rf, iss, err := prepareRotation(dir, password, c, "root")
	if err != nil {
		return nil, err
	}
	l := Layout{dir}
	rootGen, interGen := rf.maxGen()
	rootGen++
	keyOut := c.rootKeyOut
	if keyOut == "" {
		keyOut = l.p("secrets", fmt.Sprintf("root_ca_key.g%d", rootGen))
	}
	abs, err := filepath.Abs(keyOut)
	if err != nil {
		return nil, errorf("rotate root: --root-key-out %q: %v", keyOut, err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return nil, errorf("rotate root: %s already exists: choose a new file (--root-key-out)", keyOut)
	}
	now := c.clock.Now()
	t0 := now.Add(-time.Minute).Truncate(time.Second)
	rootKey, rootCert, err := newCACert(generationName(s.Name+" Root CA", rootGen), t0, 10*365*24*time.Hour, 1, nil, nil)
	if err != nil {
		return nil, errorf("root certificate: %w", err)
	}
	rg := &rootGeneration{Generation: rootGen, Cert: string(pemfile.EncodeCertificates(rootCert)), cert: rootCert, KeyFile: abs}
	if rel, err := filepath.Rel(mustAbs(l.Dir), abs); err == nil && !strings.HasPrefix(rel, "..") {
		rg.KeyFile = rel
	}
	ig, err := newIntermediate(s, rg, rootKey, interGen+1, t0, now.Add(c.switchAfter).Truncate(time.Second), password)
	if err != nil {
		return nil, err
	}
	overlap := max(c.overlap, s.MaxTTL.Duration)
	retire := ig.IssuesFrom.Add(overlap)
	iss.RetireAfter = retire
	if old := rf.root(iss.Root); old != nil {
		old.RetireAfter = retire
	}
	if err := writeEncryptedKey(abs, rootKey, password); err != nil {
		return nil, err
	}
	rf.Roots = append(rf.Roots, rg)
	rf.Intermediates = append(rf.Intermediates, ig)
	if err := rf.save(l); err != nil {
		return nil, err
	}
	return rf.status(now), nil
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// Retire drops the intermediates past their retire time and the roots
// whose intermediates are all gone and whose own time has come. It never
// drops the intermediate issuing now; WithForce drops the others before
// their time (after a compromise: every certificate they issued stops
// verifying). It returns the generations dropped.
func Retire(dir string, password []byte, opts ...RotateOption) ([]CAGeneration, error) {
	c := rotateOptions(opts)
	if _, err := LoadSettings(dir); err != nil {
		return nil, err
	}
	l := Layout{dir}
	rf, explicit, err := loadRotation(l)
	if err != nil {
		return nil, err
	}
	now := c.clock.Now()
	iss := rf.issuing(now)
	if _, err := iss.signer(password); err != nil {
		return nil, err
	}
	if !explicit || len(rf.Intermediates) == 1 && len(rf.Roots) == 1 {
		return nil, errorf("rotate retire: nothing to retire: the CA holds one root and one intermediate")
	}
	st := rf.status(now)
	var gone []CAGeneration
	var keep []*intermediateGeneration
	var waiting []string
	for i, ig := range rf.Intermediates {
		switch {
		case ig == iss:
			keep = append(keep, ig)
		case ig.IssuesFrom.After(now):
			keep = append(keep, ig) // a pending generation is never retired
		case ig.RetireAfter.IsZero() && !c.force:
			keep = append(keep, ig)
		case !c.force && ig.RetireAfter.After(now):
			keep = append(keep, ig)
			waiting = append(waiting, fmt.Sprintf("intermediate generation %d can be retired after %s", ig.Generation, ig.RetireAfter.UTC().Format(time.RFC3339)))
		default:
			gone = append(gone, st.Intermediates[i])
		}
	}
	used := map[int]bool{}
	for _, ig := range keep {
		used[ig.Root] = true
	}
	var roots []*rootGeneration
	for i, r := range rf.Roots {
		if used[r.Generation] || (!c.force && r.RetireAfter.After(now)) {
			roots = append(roots, r)
			continue
		}
		gone = append(gone, st.Roots[i])
	}
	if len(gone) == 0 {
		if len(waiting) > 0 {
			return nil, errorf("rotate retire: nothing to retire yet: %s (--force retires before the time, after a compromise)", strings.Join(waiting, "; "))
		}
		if next := rf.nextSwitch(now); !next.IsZero() {
			return nil, errorf("rotate retire: nothing to retire: intermediate generation %d issues now and the new one only from %s", iss.Generation, next.UTC().Format(time.RFC3339))
		}
		return nil, errorf("rotate retire: nothing to retire: intermediate generation %d issues now", iss.Generation)
	}
	rf.Intermediates, rf.Roots = keep, roots
	sort.Slice(gone, func(i, j int) bool {
		return gone[i].Kind > gone[j].Kind || gone[i].Kind == gone[j].Kind && gone[i].Generation < gone[j].Generation
	})
	if err := rf.save(l); err != nil {
		return nil, err
	}
	return gone, nil
}
