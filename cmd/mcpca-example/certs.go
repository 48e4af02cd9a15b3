package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// fileCertSource serves the certificate and key of two PEM files and picks
// up new ones (written by `mcpca renew` or `mcpca agent`) without a restart:
// at every poll interval and on Reload. A pair that does not load (a
// half-written renewal, a key that does not match) is logged and the
// previous pair keeps being served.
type fileCertSource struct {
	certFile, keyFile string
	log               *slog.Logger

	cur atomic.Pointer[tls.Certificate]

	mu       sync.Mutex
	lastCert []byte
	lastKey  []byte
	lastErr  string
}

func newFileCertSource(certFile, keyFile string, log *slog.Logger) (*fileCertSource, error) {
	s := &fileCertSource{certFile: certFile, keyFile: keyFile, log: log}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate serves the current pair.
func (s *fileCertSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

// Current returns the current pair.
func (s *fileCertSource) Current() *tls.Certificate { return s.cur.Load() }

// Reload reads the files and reports whether the pair changed.
func (s *fileCertSource) Reload() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	certPEM, err := os.ReadFile(s.certFile)
	if err != nil {
		return false, fmt.Errorf("reading the certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(s.keyFile)
	if err != nil {
		return false, fmt.Errorf("reading the key: %w", err)
	}
	if bytes.Equal(certPEM, s.lastCert) && bytes.Equal(keyPEM, s.lastKey) {
		return false, nil
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("loading %s and %s: %w", s.certFile, s.keyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return false, fmt.Errorf("parsing %s: %w", s.certFile, err)
		}
	}
	s.lastCert, s.lastKey = certPEM, keyPEM
	s.cur.Store(&pair)
	return true, nil
}

// Run polls the files every interval until ctx is done.
func (s *fileCertSource) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.poll()
		}
	}
}

func (s *fileCertSource) poll() {
	changed, err := s.Reload()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil && err.Error() != s.lastErr:
		s.lastErr = err.Error()
		s.log.Warn("keeping the current certificate", "error", err)
	case err == nil && changed:
		s.lastErr = ""
		leaf := s.cur.Load().Leaf
		s.log.Info("certificate reloaded", "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	}
}
