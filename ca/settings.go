package ca

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/atomicfile"
)

// Layout names the files of a CA directory created by Init.
type Layout struct{ Dir string }

func (l Layout) p(parts ...string) string { return filepath.Join(append([]string{l.Dir}, parts...)...) }

// RootCert is the root certificate, the file clients trust.
func (l Layout) RootCert() string { return l.p("certs", "root_ca.crt") }

// IntermediateCert is the issuing certificate.
func (l Layout) IntermediateCert() string { return l.p("certs", "intermediate_ca.crt") }

// RootKey is the root's private key, encrypted with the CA password.
func (l Layout) RootKey() string { return l.p("secrets", "root_ca_key") }

// IntermediateKey is the issuing key, encrypted with the CA password.
func (l Layout) IntermediateKey() string { return l.p("secrets", "intermediate_ca_key") }

// TokenSigningKey is the key that signs access tokens and the API key set
// (ECDSA P-256), encrypted with the CA password.
func (l Layout) TokenSigningKey() string { return l.p("secrets", "token_signing_key") }

// PasswordFile is where Init writes a generated password (0600).
func (l Layout) PasswordFile() string { return l.p("secrets", "password") }

// StepConfig is step-ca's own configuration (ca.json).
func (l Layout) StepConfig() string { return l.p("config", "ca.json") }

// SettingsFile is mcpca's configuration: trust domain, OID arc, lifetimes and
// the issuance limits of each provisioner.
func (l Layout) SettingsFile() string { return l.p("config", "mcpca.json") }

// DB is step-ca's bbolt database file, used only with WithStepCADatabase
// (and by upstream step-ca reading config/ca.json).
func (l Layout) DB() string { return l.p("db", "ca.db") }

// Store is mcpca's store file (package ca/store), the default database.
// Records in a step-ca DB file are not migrated into it.
func (l Layout) Store() string { return l.p("db", "mcpca.db") }

// LockFile is held (flock) by the one running `mcpca serve`.
func (l Layout) LockFile() string { return l.p("ca.lock") }

// Duration is a time.Duration that reads and writes as "24h".
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Settings is mcpca's part of a CA's configuration (config/mcpca.json).
type Settings struct {
	// digest names the bytes it was loaded from (Digest).
	digest string

	Name        string   `json:"name"`
	TrustDomain string   `json:"trustDomain"`
	OIDArc      string   `json:"oidArc"`
	Address     string   `json:"address"`
	DNSNames    []string `json:"dnsNames"`
	// DefaultTTL is the lifetime of a certificate whose token names none.
	DefaultTTL Duration `json:"defaultTTL"`
	// MaxTTL is the longest lifetime any token may ask for.
	MaxTTL Duration `json:"maxTTL"`
	// MaxTokenTTL bounds the lifetime of an enrolment or revocation token
	// (exp - nbf, and exp - now at redemption); 0 means
	// DefaultMaxTokenTTL.
	MaxTokenTTL Duration `json:"maxTokenTTL,omitzero"`
	// RenewalGrace is how long a certificate may still renew after its
	// first renewal (0: the server's, RenewalGrace unless WithRenewalGrace).
	RenewalGrace Duration `json:"renewalGrace,omitzero"`
	// Provisioners maps a provisioner name to what its tokens may grant.
	Provisioners map[string]*ProvisionerPolicy `json:"provisioners"`
	// PublishEncryptedKeys makes the CA serve each provisioner's encrypted
	// private key to anyone, at GET /provisioners and
	// /provisioners/<kid>/encrypted-key, as step-ca does: the step CLI's
	// `step ca token` needs it. Off by default, because whoever fetches an
	// encrypted key can guess its password offline.
	PublishEncryptedKeys bool `json:"publishEncryptedKeys,omitempty"`
}

// MinTTL is the shortest certificate lifetime the CA issues.
const MinTTL = 5 * time.Minute

// ProvisionerPolicy limits what tokens of one provisioner can grant. The admin
// provisioner created by Init is unrestricted; any other grants only roles in
// AllowRoles, attribute keys in AllowAttrKeys, and names matching one of
// AllowNames ("client/team-a-*", path.Match syntax against "<kind>/<name>").
// An empty list allows nothing.
type ProvisionerPolicy struct {
	Admin         bool     `json:"admin,omitempty"`
	AllowRoles    []string `json:"allowRoles,omitempty"`
	AllowAttrKeys []string `json:"allowAttrKeys,omitempty"`
	AllowNames    []string `json:"allowNames,omitempty"`
	// AllowDNS are the DNS names a server identity of this provisioner may
	// carry (path.Match patterns, e.g. "*.team-a.acme.test"); AllowIPs the
	// networks (CIDR) its IP addresses must fall in. Empty allows none.
	AllowDNS []string `json:"allowDNS,omitempty"`
	AllowIPs []string `json:"allowIPs,omitempty"`
	// OwnPassword records that the provisioner's key is encrypted with its
	// own password (AddProvisioner with WithProvisionerPassword), not the
	// CA password.
	OwnPassword bool `json:"ownPassword,omitempty"`
}

// DefaultMaxTokenTTL is the longest token lifetime a CA accepts when its
// settings name none.
const DefaultMaxTokenTTL = 24 * time.Hour

// TokenTTLLimit is the longest lifetime of a token this CA accepts.
func (s *Settings) TokenTTLLimit() time.Duration {
	if s.MaxTokenTTL.Duration > 0 {
		return s.MaxTokenTTL.Duration
	}
	return DefaultMaxTokenTTL
}

// CAURL is the https URL clients use to reach the CA.
func (s *Settings) CAURL() string { return "https://" + s.Address }

// CRLURL is where the CA serves its CRL, named in the CRL's Issuing
// Distribution Point.
func (s *Settings) CRLURL() string { return s.CAURL() + "/1.0/crl" }

// OIDs returns the extension OIDs of this CA.
func (s *Settings) OIDs() (identity.OIDs, error) {
	arc, err := identity.ParseOIDArc(s.OIDArc)
	if err != nil {
		return identity.OIDs{}, errorf("%s: %w", "oidArc", err)
	}
	return identity.OIDsFromArc(arc), nil
}

// LoadSettings reads config/mcpca.json of a CA directory.
func LoadSettings(dir string) (*Settings, error) {
	file := Layout{dir}.SettingsFile()
	b, err := os.ReadFile(file)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, errorf("%s does not exist: is %s a CA directory made by `mcpca init`?", file, dir)
		}
		return nil, errorf("reading %s: %w", file, err)
	}
	var s Settings
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, errorf("%s is corrupted: %v", file, err)
	}
	sum := sha256.Sum256(b)
	s.digest = hex.EncodeToString(sum[:8])
	if err := s.validate(); err != nil {
		return nil, errorf("%s: %w", file, err)
	}
	return &s, nil
}

// Digest is the first 16 hex digits of the SHA-256 of the mcpca.json bytes
// s was loaded from ("" when it was not loaded from a file): the reload
// log line carries it, so an operator (or a test) can tell which version
// of the file a running CA serves.
func (s *Settings) Digest() string { return s.digest }

func (s *Settings) validate() error {
	if !identity.ValidTrustDomain(s.TrustDomain) {
		return errorf("invalid trustDomain %q", s.TrustDomain)
	}
	if _, err := s.OIDs(); err != nil {
		return err
	}
	if s.Address == "" {
		return errorf("missing address")
	}
	if s.MaxTTL.Duration < MinTTL || s.DefaultTTL.Duration < MinTTL || s.DefaultTTL.Duration > s.MaxTTL.Duration {
		return errorf("lifetimes out of order: need %s <= defaultTTL (%s) <= maxTTL (%s)", MinTTL, s.DefaultTTL, s.MaxTTL)
	}
	if s.MaxTokenTTL.Duration < 0 {
		return errorf("maxTokenTTL %s is negative", s.MaxTokenTTL)
	}
	for name, p := range s.Provisioners {
		if p == nil {
			return errorf("provisioner %q has no policy", name)
		}
		if err := p.validate(); err != nil {
			return errorf("provisioner %q: %w", name, err)
		}
	}
	return nil
}

func (p *ProvisionerPolicy) validate() error {
	for _, r := range p.AllowRoles {
		if err := identity.ValidateRole(r); err != nil {
			return err
		}
	}
	for _, k := range p.AllowAttrKeys {
		if err := identity.ValidateAttribute(k, ""); err != nil {
			return err
		}
	}
	for _, pat := range p.AllowNames {
		if _, err := path.Match(pat, "client/x"); err != nil {
			return errorf("invalid name pattern %q: %v", pat, err)
		}
		kind, _, ok := strings.Cut(pat, "/")
		if !ok || (kind != "client" && kind != "server" && kind != "*") {
			return errorf("invalid name pattern %q: want <client|server>/<name-pattern>, e.g. client/team-a-*", pat)
		}
	}
	for _, pat := range p.AllowDNS {
		if _, err := path.Match(pat, "x"); err != nil {
			return errorf("invalid DNS pattern %q: %v", pat, err)
		}
	}
	for _, cidr := range p.AllowIPs {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			return errorf("invalid network %q: want CIDR, e.g. 10.1.0.0/16", cidr)
		}
	}
	return nil
}

// save writes the settings atomically.
func (s *Settings) save(dir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return errorf("encoding settings: %v", err)
	}
	return atomicfile.WriteFile(Layout{dir}.SettingsFile(), append(b, '\n'), 0o600)
}

// Check reports whether a provisioner may grant the identity described by c
// with the given SANs (the SPIFFE ID, and DNS names and IP addresses for a
// server). The error names the first offending value.
func (p *ProvisionerPolicy) Check(provisioner string, c *Claims, sans []string) error {
	if why := p.refusal(provisioner, c, sans); why != "" {
		return errorf("%s", why)
	}
	return nil
}

// refusal says why p refuses c and sans ("" when it allows them).
func (p *ProvisionerPolicy) refusal(provisioner string, c *Claims, sans []string) string {
	if p.Admin {
		return ""
	}
	target := string(c.Kind) + "/" + c.Name
	if !p.allowsName(target) {
		return fmt.Sprintf("provisioner %q may not issue for name %q (allowed: %s)", provisioner, target, listOrNone(p.AllowNames))
	}
	for _, r := range c.Roles {
		if !slices.Contains(p.AllowRoles, r) {
			return fmt.Sprintf("provisioner %q may not grant role %q (allowed: %s)", provisioner, r, listOrNone(p.AllowRoles))
		}
	}
	for k := range c.Attributes {
		if !slices.Contains(p.AllowAttrKeys, k) {
			return fmt.Sprintf("provisioner %q may not set attribute %q (allowed: %s)", provisioner, k, listOrNone(p.AllowAttrKeys))
		}
	}
	for _, san := range sans {
		if strings.HasPrefix(san, "spiffe://") {
			continue // the SPIFFE ID, checked through the name above
		}
		if ip, err := netip.ParseAddr(san); err == nil {
			if !p.allowsIP(ip) {
				return fmt.Sprintf("provisioner %q may not issue for IP address %s (allowed: %s)", provisioner, san, listOrNone(p.AllowIPs))
			}
			continue
		}
		if !matchAny(p.AllowDNS, strings.ToLower(san)) {
			return fmt.Sprintf("provisioner %q may not issue for DNS name %q (allowed: %s)", provisioner, san, listOrNone(p.AllowDNS))
		}
	}
	return ""
}

// allowsName reports whether "<kind>/<name>" matches one of AllowNames.
func (p *ProvisionerPolicy) allowsName(target string) bool { return matchAny(p.AllowNames, target) }

func (p *ProvisionerPolicy) allowsIP(ip netip.Addr) bool {
	for _, cidr := range p.AllowIPs {
		if pre, err := netip.ParsePrefix(cidr); err == nil && pre.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

func matchAny(patterns []string, s string) bool {
	for _, pat := range patterns {
		if ok, _ := path.Match(pat, s); ok {
			return true
		}
	}
	return false
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}
