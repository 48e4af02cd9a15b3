package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/certificates/db"
	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/pemutil"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/atomicfile"
	"github.com/mcpca/mcpca/internal/pemfile"
)

// AdminProvisioner is the name of the unrestricted provisioner Init creates.
const AdminProvisioner = "admin"

// InitConfig is what Init needs to create a CA directory.
type InitConfig struct {
	Dir         string
	Name        string   // e.g. "Acme MCP CA"
	TrustDomain string   // e.g. "acme.test"
	Address     string   // listen address, e.g. "127.0.0.1:9443"
	DNSNames    []string // names of the CA in its TLS certificate; the address host is added
	// Password encrypts the CA keys and the provisioner key. When nil, Init
	// generates one and writes it to secrets/password (0600). A given
	// password must pass CheckPassword unless InsecurePassword is set.
	Password         []byte
	InsecurePassword bool
	// PublishEncryptedKeys sets Settings.PublishEncryptedKeys: the CA then
	// serves the provisioners' encrypted keys to anyone, for the step CLI's
	// `step ca token`.
	PublishEncryptedKeys bool
	// RootKeyOut, when set, is where the encrypted root key is written
	// instead of secrets/root_ca_key: the running CA never needs it (it
	// signs with the intermediate), so it can live offline.
	RootKeyOut string
	OIDArc     string        // default identity.DefaultOIDArc
	MaxTTL     time.Duration // longest certificate lifetime, default 24h
	// DefaultTTL is the lifetime of a certificate whose token names none, default min(24h, MaxTTL).
	DefaultTTL      time.Duration
	RootTTL         time.Duration // default 10 years
	IntermediateTTL time.Duration // default 5 years
	Clock           clock.Clock   // the time the certificates start at; default the system clock
}

// InitResult tells what Init created.
type InitResult struct {
	RootFingerprint string // SHA-256 of the root certificate's DER, hex
	PasswordFile    string // set when Init generated the password
	// RootKeyFile is where the encrypted root key was written:
	// Layout.RootKey() or InitConfig.RootKeyOut.
	RootKeyFile string
	CAURL       string
	Layout      Layout
}

// Init creates a CA directory: a root and an intermediate (ECDSA P-256, keys
// encrypted at rest with the password), an admin JWK provisioner whose private
// key is encrypted too, step-ca's configuration and mcpca's settings. It
// refuses to touch an existing CA directory.
func Init(c InitConfig) (*InitResult, error) {
	if c.Dir == "" {
		return nil, errorf("init: missing directory")
	}
	if c.Name == "" {
		return nil, errorf("init: missing CA name (--name)")
	}
	if !identity.ValidTrustDomain(c.TrustDomain) {
		return nil, errorf("init: invalid trust domain %q: use 1-255 characters of [a-z0-9._-]", c.TrustDomain)
	}
	host, port, err := net.SplitHostPort(c.Address)
	if err != nil || port == "" || port == "0" {
		return nil, errorf("init: invalid address %q: want host:port with a fixed port, e.g. 127.0.0.1:9443", c.Address)
	}
	if c.OIDArc == "" {
		c.OIDArc = identity.DefaultOIDArc.String()
	}
	if _, err := identity.ParseOIDArc(c.OIDArc); err != nil {
		return nil, errorf("init: %w", err)
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = 24 * time.Hour
	}
	if c.DefaultTTL == 0 {
		c.DefaultTTL = min(24*time.Hour, c.MaxTTL)
	}
	if c.MaxTTL < MinTTL || c.DefaultTTL < MinTTL || c.DefaultTTL > c.MaxTTL {
		return nil, errorf("init: need %s <= default lifetime (%s) <= max lifetime (%s)", MinTTL, c.DefaultTTL, c.MaxTTL)
	}
	if c.RootTTL == 0 {
		c.RootTTL = 10 * 365 * 24 * time.Hour
	}
	if c.IntermediateTTL == 0 {
		c.IntermediateTTL = 5 * 365 * 24 * time.Hour
	}
	now := clock.Or(c.Clock).Now
	dns := []string{}
	for _, d := range append(append([]string{}, c.DNSNames...), host) {
		if d != "" && !contains(dns, d) {
			dns = append(dns, d)
		}
	}
	if c.Password != nil && !c.InsecurePassword {
		if why := passwordWeakness(c.Password); why != "" {
			return nil, errorf("init: %s", why)
		}
	}
	l := Layout{c.Dir}
	rootKeyFile := l.RootKey()
	if c.RootKeyOut != "" {
		abs, err := filepath.Abs(c.RootKeyOut)
		if err != nil {
			return nil, errorf("init: --root-key-out %q: %v", c.RootKeyOut, err)
		}
		if _, err := os.Lstat(abs); err == nil {
			return nil, errorf("init: --root-key-out %s already exists: choose a new file", c.RootKeyOut)
		}
		rootKeyFile = abs
	}
	if _, err := os.Stat(l.SettingsFile()); err == nil {
		return nil, errorf("init: %s already holds a CA (%s exists); choose another --dir", c.Dir, l.SettingsFile())
	}
	for _, d := range []string{"certs", "secrets", "config", "db"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return nil, errorf("init: %w", err)
		}
	}
	res := &InitResult{Layout: l, CAURL: "https://" + c.Address, RootKeyFile: rootKeyFile}
	password := c.Password
	if password == nil {
		buf := make([]byte, 32)
		if _, err := rand.Read(buf); err != nil {
			return nil, errorf("init: generating password: %w", err)
		}
		password = []byte(base64.RawURLEncoding.EncodeToString(buf))
		if err := atomicfile.WriteFile(l.PasswordFile(), append(append([]byte{}, password...), '\n'), 0o600); err != nil {
			return nil, errorf("init: %w", err)
		}
		res.PasswordFile = l.PasswordFile()
	}
	if len(password) == 0 {
		return nil, errorf("init: the password is empty")
	}

	t0 := now().Add(-time.Minute).Truncate(time.Second)
	rootKey, root, err := newCACert(c.Name+" Root CA", t0, c.RootTTL, 1, nil, nil)
	if err != nil {
		return nil, errorf("init: root certificate: %w", err)
	}
	intKey, inter, err := newCACert(c.Name+" Intermediate CA", t0, c.IntermediateTTL, 0, root, rootKey)
	if err != nil {
		return nil, errorf("init: intermediate certificate: %w", err)
	}
	if err := writeCert(l.RootCert(), root); err != nil {
		return nil, err
	}
	if err := writeCert(l.IntermediateCert(), inter); err != nil {
		return nil, err
	}
	if err := writeEncryptedKey(rootKeyFile, rootKey, password); err != nil {
		return nil, err
	}
	if err := writeEncryptedKey(l.IntermediateKey(), intKey, password); err != nil {
		return nil, err
	}
	tokKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, errorf("init: token signing key: %w", err)
	}
	if err := writeEncryptedKey(l.TokenSigningKey(), tokKey, password); err != nil {
		return nil, err
	}

	settings := &Settings{
		Name:         c.Name,
		TrustDomain:  c.TrustDomain,
		OIDArc:       c.OIDArc,
		Address:      c.Address,
		DNSNames:     dns,
		DefaultTTL:   Duration{c.DefaultTTL},
		MaxTTL:       Duration{c.MaxTTL},
		Provisioners: map[string]*ProvisionerPolicy{AdminProvisioner: {Admin: true}},

		PublishEncryptedKeys: c.PublishEncryptedKeys,
	}
	prov, err := newJWKProvisioner(AdminProvisioner, password, settings)
	if err != nil {
		return nil, err
	}
	cfg := &config.Config{
		Root:             []string{l.RootCert()},
		FederatedRoots:   []string{},
		IntermediateCert: l.IntermediateCert(),
		IntermediateKey:  l.IntermediateKey(),
		Address:          c.Address,
		DNSNames:         dns,
		DB:               &db.Config{Type: "bbolt", DataSource: l.DB()},
		AuthorityConfig: &config.AuthConfig{
			Provisioners: provisioner.List{prov},
			// Replay protection is the database's used-token table, which
			// survives restarts, so a token minted before a restart stays
			// good until it expires.
			DisableIssuedAtCheck: true,
			Backdate:             &provisioner.Duration{Duration: time.Minute},
		},
		TLS: &config.TLSOptions{
			MinVersion:    1.3,
			MaxVersion:    1.3,
			Renegotiation: false,
		},
		CRL: &config.CRLConfig{
			Enabled:          true,
			GenerateOnRevoke: true,
			CacheDuration:    &provisioner.Duration{Duration: 24 * time.Hour},
			// The CRL's Issuing Distribution Point names where it is
			// served; step-ca's default is https://<first DNS name>/1.0/crl
			// on port 443, not this CA's address.
			IDPurl: settings.CRLURL(),
		},
		CommonName: c.Name,
	}
	if err := saveStepConfig(l, cfg); err != nil {
		return nil, err
	}
	if err := settings.save(c.Dir); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(root.Raw)
	res.RootFingerprint = hex.EncodeToString(sum[:])
	return res, nil
}

// newJWKProvisioner creates a JWK provisioner whose private key is encrypted
// with the password, with lifetimes from the settings.
func newJWKProvisioner(name string, password []byte, s *Settings) (*provisioner.JWK, error) {
	jwk, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", "", 0)
	if err != nil {
		return nil, errorf("provisioner key: %w", err)
	}
	if jwk.KeyID, err = jose.Thumbprint(jwk); err != nil {
		return nil, errorf("provisioner key: %w", err)
	}
	enc, err := jose.EncryptJWK(jwk, password)
	if err != nil {
		return nil, errorf("encrypting provisioner key: %w", err)
	}
	encKey, err := enc.CompactSerialize()
	if err != nil {
		return nil, errorf("encrypting provisioner key: %w", err)
	}
	pub := jwk.Public()
	f := false
	return &provisioner.JWK{
		Type:         "JWK",
		Name:         name,
		Key:          &pub,
		EncryptedKey: encKey,
		Claims: &provisioner.Claims{
			MinTLSDur:               &provisioner.Duration{Duration: MinTTL},
			MaxTLSDur:               &provisioner.Duration{Duration: s.MaxTTL.Duration},
			DefaultTLSDur:           &provisioner.Duration{Duration: s.DefaultTTL.Duration},
			DisableRenewal:          &f,
			AllowRenewalAfterExpiry: &f,
			EnableSSHCA:             &f,
			// Keep step-ca's provisioner extension: renewal uses it to find
			// the provisioner of a certificate.
			DisableSmallstepExtensions: &f,
		},
		Options: &provisioner.Options{X509: &provisioner.X509Options{}},
	}, nil
}

// saveStepConfig writes ca.json with paths relative to the CA directory
// (loadStepConfig resolves them), so the directory can be moved.
func saveStepConfig(l Layout, cfg *config.Config) error {
	relativise(cfg)
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return errorf("encoding %s: %v", l.StepConfig(), err)
	}
	return atomicfile.WriteFile(l.StepConfig(), append(b, '\n'), 0o600)
}

func relativise(cfg *config.Config) {
	cfg.Root = []string{filepath.Join("certs", "root_ca.crt")}
	cfg.IntermediateCert = filepath.Join("certs", "intermediate_ca.crt")
	cfg.IntermediateKey = filepath.Join("secrets", "intermediate_ca_key")
	cfg.DB = &db.Config{Type: "bbolt", DataSource: filepath.Join("db", "ca.db")}
}

// newCACert makes a P-256 key and a CA certificate for it, named cn, valid
// from t0 for ttl, with the given path length, signed by parent's key (or
// self-signed when parent is nil).
func newCACert(cn string, t0 time.Time, ttl time.Duration, pathLen int, parent *x509.Certificate, parentKey crypto.Signer) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             t0,
		NotAfter:              t0.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            pathLen,
		MaxPathLenZero:        pathLen == 0,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	cert, err := createCert(tmpl, parent, key.Public(), parentKey)
	return key, cert, err
}

func createCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func writeCert(path string, cert *x509.Certificate) error {
	return atomicfile.WriteFile(path, pemfile.EncodeCertificates(cert), 0o644)
}

// writeEncryptedKey writes key as an encrypted PKCS#8 PEM (PBES2), 0600.
func writeEncryptedKey(path string, key crypto.PrivateKey, password []byte) error {
	block, err := pemutil.Serialize(key, pemutil.WithPKCS8(true), pemutil.WithPassword(password))
	if err != nil {
		return errorf("encrypting %s: %v", path, err)
	}
	return atomicfile.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

func contains(l []string, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}
