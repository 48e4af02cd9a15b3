package trust

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"sync"
	"sync/atomic"
)

// FileCertificateSource is a CertificateSource backed by a certificate
// chain file and a key file (PEM), such as `mcpca agent` or `mcpca renew`
// keeps fresh: it re-reads them at every refresh interval while Run is
// going (WithRefreshInterval, default 5 minutes) and on Reload, so a server
// picks up renewals without a restart. A pair that does not load (a
// half-written renewal, a key that does not match) keeps the previous pair
// served and is logged once.
type FileCertificateSource struct {
	certFile, keyFile string
	cfg               sourceConfig

	cur atomic.Pointer[tls.Certificate]

	mu                sync.Mutex
	lastCert, lastKey []byte
	lastErr           string
}

// NewFileCertificateSource loads the pair and returns a source for it.
func NewFileCertificateSource(certFile, keyFile string, opts ...SourceOption) (*FileCertificateSource, error) {
	s := &FileCertificateSource{certFile: certFile, keyFile: keyFile, cfg: newSourceConfig(opts)}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate serves the current pair (tls.Config.GetCertificate).
func (s *FileCertificateSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

// GetClientCertificate serves the current pair
// (tls.Config.GetClientCertificate).
func (s *FileCertificateSource) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

// Current returns the current pair, its Leaf set.
func (s *FileCertificateSource) Current() *tls.Certificate { return s.cur.Load() }

// Reload reads the files now and reports whether the pair changed.
func (s *FileCertificateSource) Reload() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	certPEM, err := os.ReadFile(s.certFile)
	if err != nil {
		return false, errorf("reading the certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(s.keyFile)
	if err != nil {
		return false, errorf("reading the key: %w", err)
	}
	if bytes.Equal(certPEM, s.lastCert) && bytes.Equal(keyPEM, s.lastKey) {
		return false, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, errorf("loading %s and %s: %w", s.certFile, s.keyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return false, errorf("parsing %s: %w", s.certFile, err)
		}
	}
	s.lastCert, s.lastKey = certPEM, keyPEM
	s.cur.Store(&pair)
	return true, nil
}

// Run reloads at every refresh interval until ctx ends, logging a reload
// and, once per distinct error, a pair that does not load.
func (s *FileCertificateSource) Run(ctx context.Context) error {
	return runRefresh(ctx, &s.cfg, "certificate "+s.certFile, func(context.Context) error {
		changed, err := s.Reload()
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case err != nil && err.Error() == s.lastErr:
			return nil // logged already
		case err != nil:
			s.lastErr = err.Error()
			return err
		case changed:
			s.lastErr = ""
			leaf := s.cur.Load().Leaf
			s.cfg.logger.Info("certificate reloaded", "file", s.certFile, "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
		}
		return nil
	})
}
