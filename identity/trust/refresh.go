package trust

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// maxFetchBytes bounds what a source reads from a file or an HTTP response.
const maxFetchBytes = 16 << 20

// runRefresh calls refresh now and then every interval until ctx ends,
// reporting each result to onRefresh and logging failures.
func runRefresh(ctx context.Context, cfg *sourceConfig, what string, refresh func(context.Context) error) error {
	do := func() {
		err := refresh(ctx)
		if err != nil && ctx.Err() == nil {
			cfg.logger.Warn("refresh failed; keeping the previous version", "source", what, "err", err)
		}
		if cfg.onRefresh != nil {
			cfg.onRefresh(err)
		}
	}
	do()
	t := cfg.clock.NewTimer(cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C():
			do()
			t.Reset(cfg.interval)
		}
	}
}

// fetch reads location: an http(s) URL through hc, or a file path.
func fetch(ctx context.Context, hc *http.Client, location string) ([]byte, error) {
	return fetchAccept(ctx, hc, location, "")
}

// fetchAccept is fetch with an Accept header on http(s) requests.
func fetchAccept(ctx context.Context, hc *http.Client, location, accept string) ([]byte, error) {
	if !isURL(location) {
		f, err := os.Open(location)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readLimited(f)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", location, resp.Status)
	}
	return readLimited(resp.Body)
}

func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxFetchBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFetchBytes {
		return nil, fmt.Errorf("more than %d bytes", maxFetchBytes)
	}
	return b, nil
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://")
}

// CAHTTPClient returns an HTTP client for talking to the CA itself (its
// /roots and /crl endpoints): it checks the server's certificate chain and
// its host name (or IP address) against the roots src supplies at the time of
// each connection, so it keeps working across a root rotation the bundle has
// picked up. It connects directly, never through a proxy. Of the options,
// only WithClock matters: it sets the time certificates are checked at.
func CAHTTPClient(src BundleSource, opts ...SourceOption) *http.Client {
	cfg := newSourceConfig(opts)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var d net.Dialer
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := &tls.Config{
			MinVersion: tls.VersionTLS12,
			// Verification happens in VerifyConnection against the current
			// bundle, with the host we dialed.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				return verifyCAServer(src, cs, host, cfg.clock.Now())
			},
		}
		if net.ParseIP(host) == nil {
			tc.ServerName = host
		}
		conn := tls.Client(raw, tc)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return conn, nil
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// verifyCAServer checks a CA server's chain and name. Its errors are not
// made by errorf: net/http wraps them in the caller's identity error.
func verifyCAServer(src BundleSource, cs tls.ConnectionState, host string, now time.Time) error {
	b, err := src.Bundle()
	if err != nil {
		return err
	}
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("CA server presented no certificate")
	}
	inter := b.interPool.Clone()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName:       host,
		Roots:         b.rootPool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		CurrentTime:   now,
	})
	if err != nil {
		return fmt.Errorf("CA server certificate: %v", err)
	}
	return nil
}
