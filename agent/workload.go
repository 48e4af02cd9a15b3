package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/caclient"
)

// Workload is everything a program needs to take part in mcpca mTLS, made
// by one call (NewWorkload), as go-spiffe's workloadapi.NewX509Source makes
// an X.509 source: its own certificate, renewed in the background (a
// Source); the CA's trust bundle, refreshed with it; the CA's CRL, fetched
// and refreshed; and a Verifier that checks peers against all three. Its
// ServerTLSConfig and ClientTLSConfig are ready for an mTLS listener or
// client. Close stops the background work.
type Workload struct {
	src      *Source
	crl      *trust.CRLFetcher
	bundle   trust.BundleSource
	verifier *identity.Verifier
	id       identity.ID
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
}

// WorkloadOption configures NewWorkload.
type WorkloadOption interface{ applyWorkload(*workloadConfig) }

type workloadConfig struct {
	rootFile, fingerprint string
	roots                 []*x509.Certificate
	token                 string
	certFile, keyFile     string
	sourceOpts            []Option
	verifyOpts            []identity.VerifyOption
	crlInterval           time.Duration
}

type workloadOptionFunc func(*workloadConfig)

func (f workloadOptionFunc) applyWorkload(c *workloadConfig) { f(c) }

// WithRootFile trusts the CA roots in the PEM file (`mcpca bootstrap`
// writes it) for the first contact with the CA.
func WithRootFile(path string) WorkloadOption {
	return workloadOptionFunc(func(c *workloadConfig) { c.rootFile = path })
}

// WithRootFingerprint fetches the CA's root and trusts it only if its
// SHA-256 fingerprint (hex, as `mcpca init` prints it) matches, as `mcpca
// bootstrap` does.
func WithRootFingerprint(sha256Hex string) WorkloadOption {
	return workloadOptionFunc(func(c *workloadConfig) { c.fingerprint = sha256Hex })
}

// WithToken enrols with a one-time token (a new P-256 key) unless
// WithKeyPairFiles names files that already hold a usable certificate.
func WithToken(token string) WorkloadOption {
	return workloadOptionFunc(func(c *workloadConfig) { c.token = token })
}

// WithKeyPairFiles starts from the certificate and key in these files
// (written by `mcpca enroll` or `mcpca agent`) and writes every renewal back
// to them atomically. With WithToken too, the token enrols only when the
// files do not exist yet, and the enrolled pair is written to them.
func WithKeyPairFiles(certFile, keyFile string) WorkloadOption {
	return workloadOptionFunc(func(c *workloadConfig) { c.certFile, c.keyFile = certFile, keyFile })
}

// WithSourceOptions passes options to the Source (renew point, jitter,
// clock, logger, ...).
func WithSourceOptions(opts ...Option) WorkloadOption {
	return workloadOptionFunc(func(c *workloadConfig) { c.sourceOpts = append(c.sourceOpts, opts...) })
}

// WithVerifyOptions passes options to the Verifier. By default it accepts
// the trust domain of the workload's own certificate and checks the CA's
// CRL, failing closed.
func WithVerifyOptions(opts ...identity.VerifyOption) WorkloadOption {
	return workloadOptionFunc(func(c *workloadConfig) { c.verifyOpts = append(c.verifyOpts, opts...) })
}

// NewWorkload contacts the CA at caURL (https://host:port) and returns once
// the workload's certificate, the CA's trust bundle and its CRL are loaded,
// or fails when ctx ends first (give it a deadline) or the CA refuses
// (a spent token, a revoked certificate). The roots come from WithRootFile
// or WithRootFingerprint; the certificate from WithKeyPairFiles and/or
// WithToken. Renewal, the bundle and the CRL are then kept fresh until
// Close.
func NewWorkload(ctx context.Context, caURL string, opts ...WorkloadOption) (*Workload, error) {
	var cfg workloadConfig
	for _, o := range opts {
		o.applyWorkload(&cfg)
	}
	caURL = strings.TrimRight(caURL, "/")
	if !strings.HasPrefix(caURL, "https://") {
		return nil, errorf("CA URL %q must start with https://", caURL)
	}
	if (cfg.certFile == "") != (cfg.keyFile == "") {
		return nil, errorf("WithKeyPairFiles needs both a certificate file and a key file")
	}
	if cfg.token == "" && cfg.certFile == "" {
		return nil, errorf("no certificate to start from: give WithToken, WithKeyPairFiles, or both")
	}
	roots, err := workloadRoots(ctx, caURL, &cfg)
	if err != nil {
		return nil, err
	}
	w := &Workload{}
	client := &CAClient{CAURL: caURL, TrustRoots: func() *x509.CertPool {
		pool := x509.NewCertPool()
		for _, r := range roots {
			pool.AddCert(r)
		}
		if w.src != nil { // roots the CA rotated in since
			for _, r := range w.src.Roots() {
				pool.AddCert(r)
			}
		}
		return pool
	}}
	cert, err := workloadCertificate(ctx, client, &cfg)
	if err != nil {
		return nil, err
	}
	if bundle, err := client.Roots(ctx); err != nil {
		return nil, errorf("fetching the CA's trust bundle: %w", err)
	} else if len(bundle) > 0 {
		roots = bundle
	}
	sopts := []Option{WithRoots(roots), WithBundle(client, 0)}
	if cfg.certFile != "" {
		sopts = append(sopts, WithStore(&FileSink{CertFile: cfg.certFile, KeyFile: cfg.keyFile}))
	}
	src, err := NewSource(cert, client, append(sopts, cfg.sourceOpts...)...)
	if err != nil {
		return nil, err
	}
	client.Clock = src.cfg.clock
	w.src = src
	ident, err := identity.FromCertificate(cert.Leaf)
	if err != nil {
		return nil, errorf("the workload's certificate: %w", err)
	}
	w.id = ident.ID
	bundleSrc := trust.RootsSource(src)
	w.bundle = bundleSrc
	w.crl, err = trust.NewCRLFetcher(caURL+"/1.0/crl", trust.WithHTTPClient(trust.CAHTTPClient(bundleSrc)), trust.WithBundle(bundleSrc))
	if err != nil {
		return nil, err
	}
	if err := w.crl.Refresh(ctx); err != nil {
		return nil, errorf("fetching the CA's CRL: %w", err)
	}
	vopts := append([]identity.VerifyOption{identity.WithTrustDomains(w.id.TrustDomain), identity.WithCRL(w.crl)}, cfg.verifyOpts...)
	if w.verifier, err = identity.NewVerifier(bundleSrc, vopts...); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.cancel = cancel
	w.wg.Add(2)
	go func() { defer w.wg.Done(); src.Run(runCtx) }()
	go func() { defer w.wg.Done(); _ = w.crl.Run(runCtx) }()
	return w, nil
}

// workloadRoots returns the roots to trust for the first contact with the
// CA.
func workloadRoots(ctx context.Context, caURL string, cfg *workloadConfig) ([]*x509.Certificate, error) {
	switch {
	case cfg.rootFile != "" && cfg.fingerprint != "":
		return nil, errorf("give WithRootFile or WithRootFingerprint, not both")
	case cfg.rootFile != "":
		roots, err := LoadCertificates(cfg.rootFile)
		if err != nil {
			return nil, err
		}
		return roots, nil
	case cfg.fingerprint != "":
		root, err := caclient.Bootstrap(ctx, caURL, cfg.fingerprint)
		if err != nil {
			return nil, errorf("%w", err)
		}
		return []*x509.Certificate{root}, nil
	}
	return nil, errorf("no CA root to trust: give WithRootFile or WithRootFingerprint")
}

// workloadCertificate loads the key pair files, or enrols with the token
// (writing the files when named) when they do not exist.
func workloadCertificate(ctx context.Context, client *CAClient, cfg *workloadConfig) (tls.Certificate, error) {
	if cfg.certFile != "" {
		cert, err := LoadKeyPair(cfg.certFile, cfg.keyFile)
		missing := errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
		if err == nil || cfg.token == "" || !missing {
			return cert, err
		}
	}
	if cfg.certFile == "" {
		return client.Enroll(ctx, cfg.token)
	}
	snap, err := (&FileSink{CertFile: cfg.certFile, KeyFile: cfg.keyFile}).Enroll(ctx, client, cfg.token, nil)
	if err != nil {
		return tls.Certificate{}, err
	}
	return snap.Certificate, nil
}

// Source returns the Source that serves and renews the certificate.
func (w *Workload) Source() *Source { return w.src }

// Verifier returns the Verifier of peers: the CA's current bundle, its
// CRL, the workload's trust domain unless WithVerifyOptions said otherwise.
func (w *Workload) Verifier() *identity.Verifier { return w.verifier }

// Bundle returns the CA's trust bundle, kept fresh with the certificate,
// as mcpca's verifiers and CRL fetchers take it (go-spiffe's form is
// GetX509BundleForTrustDomain).
func (w *Workload) Bundle() trust.BundleSource { return w.bundle }

// ID returns the workload's own SPIFFE ID.
func (w *Workload) ID() identity.ID { return w.id }

// ServerTLSConfig returns a TLS configuration for an mTLS server: it
// presents the current certificate and verifies every client with the
// Verifier (see identity.ServerTLSConfig).
func (w *Workload) ServerTLSConfig(opts ...identity.TLSOption) *tls.Config {
	return identity.ServerTLSConfig(w.src, w.verifier, opts...)
}

// ClientTLSConfig returns a TLS configuration for an mTLS client: it
// presents the current certificate and verifies the server with the
// Verifier, its host or WithServerID (see identity.ClientTLSConfig).
func (w *Workload) ClientTLSConfig(opts ...identity.TLSOption) *tls.Config {
	return identity.ClientTLSConfig(w.src, w.verifier, opts...)
}

// Close stops renewing and refreshing and waits for the background work to
// end. The last certificate, bundle and CRL stay readable.
func (w *Workload) Close() error {
	w.once.Do(func() {
		w.cancel()
		w.wg.Wait()
	})
	return nil
}
