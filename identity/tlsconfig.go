package identity

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
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

// AuthorizeID accepts only the given SPIFFE IDs. Its refusal names the
// peer's ID and the authorized ones.
func AuthorizeID(ids ...ID) Authorizer {
	return func(id *Identity) error {
		for _, want := range ids {
			if id.ID == want {
				return nil
			}
		}
		return refusal(ReasonNotAuthorized, id.ID, "%s: identity is not authorized for this connection (authorized: %s)", id.ID, idList(ids))
	}
}

func idList(ids []ID) string {
	if len(ids) == 0 {
		return "none"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ", ")
}

// TLSOption configures ServerTLSConfig and ClientTLSConfig.
type TLSOption interface{ applyTLS(*tlsConfig) }

type tlsConfig struct {
	authorize  Authorizer
	minVersion uint16
	serverName string
	serverIDs  []ID
	optional   bool
}

type tlsOptionFunc func(*tlsConfig)

func (f tlsOptionFunc) applyTLS(c *tlsConfig) { f(c) }

// WithAuthorizer adds a connection-level check on the verified peer. On a
// client it runs after, not instead of, the host name (or WithServerID)
// check.
func WithAuthorizer(a Authorizer) TLSOption {
	return tlsOptionFunc(func(c *tlsConfig) { c.authorize = a })
}

// WithServerName sets the host a client expects the server's certificate to
// be for: a DNS name or an IP address, without port (ClientTLSConfig only;
// ServerTLSConfig ignores it). It also sets the returned config's
// ServerName, so SNI and the check agree.
//
// Without it the client checks the name it dialled, which crypto/tls
// reports after the handshake: tls.Config.ServerName, which net/http and
// tls.Dial fill in from the address when it is empty. crypto/tls does not
// report an IP address (it is not sent as SNI), so a client that dials an
// IP address needs this option or WithServerID; without either it refuses
// the server.
func WithServerName(host string) TLSOption {
	return tlsOptionFunc(func(c *tlsConfig) { c.serverName = host })
}

// WithServerID makes a client accept only a server whose SPIFFE ID is one
// of ids, like go-spiffe's tlsconfig.AuthorizeID (the check is
// AuthorizeID's). The expected ID replaces the host name check: the server
// may then present a certificate for any host, or none (ClientTLSConfig
// only; on a server use WithAuthorizer(AuthorizeID(...))).
func WithServerID(ids ...ID) TLSOption {
	return tlsOptionFunc(func(c *tlsConfig) { c.serverIDs = append(c.serverIDs, ids...) })
}

// WithOptionalClientCertificate makes ServerTLSConfig request a client
// certificate instead of requiring one: a client that presents one is
// verified as always (a certificate that does not verify fails the
// handshake), a client without one connects, and the application must
// authenticate it otherwise (an OAuth access token: identity/oauth).
func WithOptionalClientCertificate() TLSOption {
	return tlsOptionFunc(func(c *tlsConfig) { c.optional = true })
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
//
// With WithOptionalClientCertificate it requests one instead: a
// connection without a client certificate is accepted, one with a
// certificate that does not verify is not.
func ServerTLSConfig(certs CertificateSource, v *Verifier, opts ...TLSOption) *tls.Config {
	cfg := newTLSConfig(opts)
	auth := tls.RequireAnyClientCert // verified in VerifyConnection
	if cfg.optional {
		auth = tls.RequestClientCert
	}
	return &tls.Config{
		MinVersion:     cfg.minVersion,
		ClientAuth:     auth,
		GetCertificate: certs.GetCertificate,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cfg.optional && len(cs.PeerCertificates) == 0 {
				return nil
			}
			return verifyConnection(v, &cfg, cs, KindClient)
		},
	}
}

// ClientTLSConfig returns a tls.Config for an mTLS client: it presents the
// certificate certs supplies (nil: none), and in VerifyConnection verifies
// the server's chain with v as a server (serverAuth, server identity; the
// Verifier's trust domains, and revocation when v has WithCRL), then checks
// that the server is the one meant:
//
//   - by default, that its certificate's DNS or IP SANs hold the host the
//     client dialled (see WithServerName; an IP address needs it);
//   - with WithServerID, that its SPIFFE ID is one of those given, instead
//     of the host check.
//
// Go's own verification is switched off (InsecureSkipVerify) because
// VerifyConnection replaces it; do not remove VerifyConnection.
func ClientTLSConfig(certs CertificateSource, v *Verifier, opts ...TLSOption) *tls.Config {
	cfg := newTLSConfig(opts)
	c := &tls.Config{
		MinVersion:         cfg.minVersion,
		ServerName:         cfg.serverName,
		InsecureSkipVerify: true, // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(v, &cfg, cs)
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

// verifyServer is the client's check of the server: the chain, then the
// expected SPIFFE ID or else the host name, then any Authorizer.
func verifyServer(v *Verifier, cfg *tlsConfig, cs tls.ConnectionState) error {
	id, err := v.Verify(cs.PeerCertificates, KindServer)
	if err != nil {
		return err
	}
	if len(cfg.serverIDs) > 0 {
		if err := AuthorizeID(cfg.serverIDs...)(id); err != nil {
			return err
		}
	} else {
		host := cs.ServerName // empty for an IP address
		if host == "" {
			host = cfg.serverName
		}
		if err := checkHost(id, cs.PeerCertificates[0], host); err != nil {
			return err
		}
	}
	if cfg.authorize != nil {
		return cfg.authorize(id)
	}
	return nil
}

// checkHost checks that leaf is valid for host (a DNS name or IP address).
func checkHost(id *Identity, leaf *x509.Certificate, host string) error {
	if host == "" {
		return refusal(ReasonWrongHost, id.ID, "%s: no server name to check the certificate against: give the host with WithServerName (crypto/tls does not report an IP address), or the expected server SPIFFE ID with WithServerID", id.ID)
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return refusal(ReasonWrongHost, id.ID, "%s: certificate is not valid for host %s (it names %s)", id.ID, quote(host), certNames(leaf))
	}
	return nil
}

// certNames lists the DNS and IP SANs of c.
func certNames(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no DNS name or IP address"
	}
	for i, n := range names {
		names[i] = truncate(n)
	}
	if len(names) > 8 {
		names = append(names[:8], "...")
	}
	return strings.Join(names, ", ")
}

// HookServerConfig adds mcpca's verification of clients to an existing
// server configuration, such as go-spiffe's tlsconfig.MTLSServerConfig or
// one of the program's own: it keeps what cfg does and then, in
// VerifyConnection, verifies the client with v as ServerTLSConfig does (the
// roles and attributes, the key policy, revocation when v has WithCRL, any
// WithAuthorizer). It requires a client certificate (RequireAnyClientCert
// unless cfg already demands more) and raises MinVersion to the option's
// (TLS 1.3 by default). It returns cfg.
func HookServerConfig(cfg *tls.Config, v *Verifier, opts ...TLSOption) *tls.Config {
	c := newTLSConfig(opts)
	if cfg.MinVersion < c.minVersion {
		cfg.MinVersion = c.minVersion
	}
	if cfg.ClientAuth < tls.RequireAnyClientCert {
		cfg.ClientAuth = tls.RequireAnyClientCert
	}
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		return verifyConnection(v, &c, cs, KindClient)
	}
	return cfg
}

// HookClientConfig adds mcpca's verification of the server to an existing
// client configuration (go-spiffe's tlsconfig.MTLSClientConfig, say): it
// keeps what cfg does and then verifies the server with v as
// ClientTLSConfig does, its host (or WithServerID) included. It raises
// MinVersion to the option's (TLS 1.3 by default). It returns cfg.
func HookClientConfig(cfg *tls.Config, v *Verifier, opts ...TLSOption) *tls.Config {
	c := newTLSConfig(opts)
	if cfg.MinVersion < c.minVersion {
		cfg.MinVersion = c.minVersion
	}
	if c.serverName != "" && cfg.ServerName == "" {
		cfg.ServerName = c.serverName
	}
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		return verifyServer(v, &c, cs)
	}
	return cfg
}
