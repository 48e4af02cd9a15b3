package ca

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"time"

	"github.com/smallstep/certificates/authority/provisioner"
	"go.step.sm/crypto/jose"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
)

// DefaultTokenTTL is the lifetime of an enrolment token.
const DefaultTokenTTL = 5 * time.Minute

// TokenRequest describes the identity an enrolment token grants.
type TokenRequest struct {
	Kind        identity.Kind
	Name        string
	Roles       []string
	Attributes  map[string]string
	DNSNames    []string      // server identities only
	IPAddresses []net.IP      // server identities only
	TTL         time.Duration // certificate lifetime; 0 = the CA's default
	TokenTTL    time.Duration // the token's own lifetime; 0 = DefaultTokenTTL
	Provisioner string        // default AdminProvisioner
}

// MintOption configures MintToken, NewMinter and MintRevokeToken.
type MintOption interface{ applyMint(*mintConfig) }

type mintConfig struct{ clock clock.Clock }

func newMintConfig(opts []MintOption) mintConfig {
	var c mintConfig
	for _, o := range opts {
		o.applyMint(&c)
	}
	c.clock = clock.Or(c.clock)
	return c
}

// MintToken creates a one-time enrolment token signed by a provisioner key of
// the CA in dir (decrypted with password). The request is checked against the
// identity contract and the provisioner's limits first, with the same rules
// the CA enforces when the token is redeemed. To mint many tokens, use a
// Minter: decrypting the provisioner key is deliberately slow.
func MintToken(dir string, password []byte, req TokenRequest, opts ...MintOption) (string, error) {
	m, err := NewMinter(dir, password, req.Provisioner, opts...)
	if err != nil {
		return "", err
	}
	return m.Token(req)
}

// Minter mints tokens with one provisioner key, decrypted once.
type Minter struct {
	dir         string
	provisioner string
	settings    *Settings
	policy      *ProvisionerPolicy
	key         *jose.JSONWebKey
	clock       clock.Clock
}

// NewMinter decrypts the key of a provisioner ("" = AdminProvisioner) of the
// CA in dir with password: the CA password, or the provisioner's own when
// it was added with WithProvisionerPassword.
// NewMinter decrypts the key once; WithClock sets the time its tokens are
// minted at (iat, nbf, exp).
func NewMinter(dir string, password []byte, provisionerName string, opts ...MintOption) (*Minter, error) {
	cfg := newMintConfig(opts)
	settings, err := LoadSettings(dir)
	if err != nil {
		return nil, err
	}
	if provisionerName == "" {
		provisionerName = AdminProvisioner
	}
	policy := settings.Provisioners[provisionerName]
	if policy == nil {
		return nil, errorf("provisioner %q has no mcpca policy in %s", provisionerName, Layout{dir}.SettingsFile())
	}
	key, err := provisionerKey(dir, provisionerName, password)
	if err != nil {
		return nil, err
	}
	return &Minter{dir: dir, provisioner: provisionerName, settings: settings, policy: policy, key: key, clock: cfg.clock}, nil
}

// Token mints one enrolment token; req.Provisioner must be empty or the
// Minter's.
func (m *Minter) Token(req TokenRequest) (string, error) {
	if req.Provisioner != "" && req.Provisioner != m.provisioner {
		return "", errorf("this minter holds the key of provisioner %q, not %q", m.provisioner, req.Provisioner)
	}
	if req.TokenTTL == 0 {
		req.TokenTTL = DefaultTokenTTL
	}
	if limit := m.settings.TokenTTLLimit(); req.TokenTTL < 0 || req.TokenTTL > limit {
		return "", errorf("token lifetime %s is outside (0, %s], the CA's limit (maxTokenTTL in %s)", req.TokenTTL, limit, Layout{m.dir}.SettingsFile())
	}
	claims := &Claims{Kind: req.Kind, Name: req.Name, Roles: req.Roles, Attributes: req.Attributes}
	if req.TTL != 0 {
		claims.TTL = req.TTL.String()
	}
	id, err := identity.NewID(m.settings.TrustDomain, req.Kind, req.Name)
	if err != nil {
		return "", err // identity's message names the value
	}
	sans := []string{id.String()}
	sans = append(sans, req.DNSNames...)
	for _, ip := range req.IPAddresses {
		sans = append(sans, ip.String())
	}
	if _, _, err := validateClaims(m.settings, id.String(), sans, claims); err != nil {
		return "", err
	}
	if err := m.policy.Check(m.provisioner, claims, sans); err != nil {
		return "", err
	}
	p := &tokenPayload{
		Subject:  id.String(),
		Audience: []string{m.settings.CAURL() + "/1.0/sign"},
		SANs:     sans,
		Mcpca:    claims,
	}
	return signToken(m.key, m.provisioner, p, m.clock.Now(), req.TokenTTL)
}

// MintRevokeToken creates a one-time token that lets an operator revoke,
// through the running CA, the certificate whose serial (decimal) is subject,
// or every certificate of an identity when subject is its SPIFFE ID.
func MintRevokeToken(dir string, password []byte, provisionerName, subject string, opts ...MintOption) (string, error) {
	cfg := newMintConfig(opts)
	settings, err := LoadSettings(dir)
	if err != nil {
		return "", err
	}
	if provisionerName == "" {
		provisionerName = AdminProvisioner
	}
	key, err := provisionerKey(dir, provisionerName, password)
	if err != nil {
		return "", err
	}
	p := &tokenPayload{Subject: subject, Audience: []string{settings.CAURL() + "/1.0/revoke"}}
	return signToken(key, provisionerName, p, cfg.clock.Now(), DefaultTokenTTL)
}

// provisionerKey decrypts the private key of a JWK provisioner with
// password: the CA password, or the provisioner's own when it has one
// (ProvisionerPolicy.OwnPassword).
func provisionerKey(dir, name string, password []byte) (*jose.JSONWebKey, error) {
	l := Layout{dir}
	cfg, err := loadStepConfig(l)
	if err != nil {
		return nil, err
	}
	var jwkProv *provisioner.JWK
	for _, p := range cfg.AuthorityConfig.Provisioners {
		if j, ok := p.(*provisioner.JWK); ok && j.Name == name {
			jwkProv = j
		}
	}
	if jwkProv == nil {
		return nil, errorf("no JWK provisioner named %q in %s", name, l.StepConfig())
	}
	own := false
	if s, err := LoadSettings(dir); err == nil && s.Provisioners[name] != nil {
		own = s.Provisioners[name].OwnPassword
	}
	if len(password) == 0 {
		if own {
			return nil, errorf("no password for provisioner %q: pass its own password with --password-file", name)
		}
		return nil, errorf("no CA password: pass --password-file (or keep the generated secrets/password)")
	}
	data, err := jose.Decrypt([]byte(jwkProv.EncryptedKey), jose.WithPassword(password))
	if err != nil {
		if own {
			return nil, errorf("the password does not decrypt the key of provisioner %q: it has its own password (set by provisioner add --provisioner-password-file), not the CA password: pass that file with --password-file", name)
		}
		return nil, errorf("the password does not decrypt the key of provisioner %q: wrong password?", name)
	}
	var key jose.JSONWebKey
	if err := json.Unmarshal(data, &key); err != nil {
		return nil, errorf("provisioner %q key: %v", name, err)
	}
	return &key, nil
}

func signToken(key *jose.JSONWebKey, issuer string, p *tokenPayload, now time.Time, ttl time.Duration) (string, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", errorf("%w", err)
	}
	iat, exp := now.Unix(), now.Add(ttl).Unix()
	p.Issuer = issuer
	p.ID = hex.EncodeToString(jti)
	p.IssuedAt = &iat
	p.NotBefore = &iat
	p.Expiry = &exp
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key.Key},
		new(jose.SignerOptions).WithType("JWT").WithHeader("kid", key.KeyID),
	)
	if err != nil {
		return "", errorf("token signer: %v", err)
	}
	tok, err := jose.Signed(signer).Claims(p).CompactSerialize()
	if err != nil {
		return "", errorf("signing token: %v", err)
	}
	return tok, nil
}
