package identity

import (
	"crypto/tls"
)

// CertificateSource supplies this side's current certificate and key.
// agent.Source implements it, and so does StaticCertificate.
type CertificateSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// StaticCertificate is a CertificateSource that always returns one
// certificate.
type StaticCertificate struct{ Cert *tls.Certificate }

// GetCertificate returns s.Cert.
func (s StaticCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s.Cert == nil {
		return nil, errorf("no certificate configured")
	}
	return s.Cert, nil
}

// Authorizer decides whether a verified peer may connect at all; finer
// per-request decisions belong to the policy engine.
type Authorizer func(*Identity) error

// AuthorizeAny accepts every identity the Verifier accepted.
func AuthorizeAny() Authorizer { return func(*Identity) error { return nil } }

// AuthorizeID accepts only the given SPIFFE IDs.
func AuthorizeID(ids ...ID) Authorizer {
	return func(id *Identity) error {
		for _, want := range ids {
			if id.ID == want {
				return nil
			}
		}
		return errorf("%s: identity is not authorized for this connection", id.ID)
	}
}

// TLSOption configures ServerTLSConfig and ClientTLSConfig.
type TLSOption interface{ applyTLS(*tlsConfig) }

type tlsConfig struct {
	authorize  Authorizer
	minVersion uint16
}

type tlsOptionFunc func(*tlsConfig)

func (f tlsOptionFunc) applyTLS(c *tlsConfig) { f(c) }

// WithAuthorizer adds a connection-level check on the verified peer.
func WithAuthorizer(a Authorizer) TLSOption {
	return tlsOptionFunc(func(c *tlsConfig) { c.authorize = a })
}

// WithMinVersion sets the minimum TLS version (default TLS 1.3).
func WithMinVersion(v uint16) TLSOption {
	return tlsOptionFunc(func(c *tlsConfig) { c.minVersion = v })
}

func newTLSConfig(opts []TLSOption) tlsConfig {
	cfg := tlsConfig{minVersion: tls.VersionTLS13}
	for _, o := range opts {
		o.applyTLS(&cfg)
	}
	return cfg
}

// ServerTLSConfig returns a tls.Config for an mTLS server: it presents the
// certificate certs supplies, requires a client certificate and verifies it
// with v as a client (KindClient) in VerifyConnection, which runs on every
// handshake, resumed sessions included. Retrieve the peer's identity with
// v.PeerIdentity.
func ServerTLSConfig(certs CertificateSource, v *Verifier, opts ...TLSOption) *tls.Config {
	cfg := newTLSConfig(opts)
	return &tls.Config{
		MinVersion:     cfg.minVersion,
		ClientAuth:     tls.RequireAnyClientCert, // verified in VerifyConnection
		GetCertificate: certs.GetCertificate,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyConnection(v, &cfg, cs, KindClient)
		},
	}
}

// ClientTLSConfig returns a tls.Config for an mTLS client: it presents the
// certificate certs supplies (nil: none), and verifies the server's chain
// with v as a server (serverAuth, server identity) in VerifyConnection.
// Go's own verification is switched off (InsecureSkipVerify) because
// VerifyConnection replaces it; do not remove VerifyConnection.
func ClientTLSConfig(certs CertificateSource, v *Verifier, opts ...TLSOption) *tls.Config {
	cfg := newTLSConfig(opts)
	c := &tls.Config{
		MinVersion:         cfg.minVersion,
		InsecureSkipVerify: true, // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyConnection(v, &cfg, cs, KindServer)
		},
	}
	if certs != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return certs.GetCertificate(nil)
		}
	}
	return c
}

func verifyConnection(v *Verifier, cfg *tlsConfig, cs tls.ConnectionState, as Kind) error {
	id, err := v.Verify(cs.PeerCertificates, as)
	if err != nil {
		return err
	}
	if cfg.authorize != nil {
		return cfg.authorize(id)
	}
	return nil
}
