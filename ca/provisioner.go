package ca

import (
	"bytes"
	"regexp"

	"github.com/smallstep/certificates/authority/provisioner"
)

var provisionerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// ProvisionerOption configures AddProvisioner.
type ProvisionerOption interface{ applyProvisioner(*provisionerConfig) }

type provisionerConfig struct {
	password []byte // the provisioner's own; nil = the CA password
	insecure bool
}

type provisionerOptionFunc func(*provisionerConfig)

func (f provisionerOptionFunc) applyProvisioner(c *provisionerConfig) { f(c) }

// WithProvisionerPassword encrypts the new provisioner's key with its own
// password instead of the CA password, so the team given it to mint tokens
// never holds the CA password (which decrypts the admin key). The password
// must pass CheckPassword and differ from the CA password.
func WithProvisionerPassword(pw []byte) ProvisionerOption {
	return provisionerOptionFunc(func(c *provisionerConfig) { c.password = pw })
}

// WithInsecurePassword skips CheckPassword for the provisioner's own
// password.
func WithInsecurePassword() ProvisionerOption {
	return provisionerOptionFunc(func(c *provisionerConfig) { c.insecure = true })
}

// AddProvisioner adds a JWK provisioner restricted by policy to the CA in
// dir. password is the CA password: it proves the caller is the operator
// (it must decrypt the admin provisioner's key), and it encrypts the new
// provisioner's key unless WithProvisionerPassword gives the provisioner its
// own. A running CA picks it up on Reload (SIGHUP to `mcpca serve`).
func AddProvisioner(dir string, password []byte, name string, policy ProvisionerPolicy, opts ...ProvisionerOption) (*ProvisionerPolicy, error) {
	var pc provisionerConfig
	for _, o := range opts {
		o.applyProvisioner(&pc)
	}
	if !provisionerName.MatchString(name) {
		return nil, errorf("invalid provisioner name %q: use 1-64 characters of [a-z0-9_.-]", name)
	}
	policy.Admin = false
	policy.OwnPassword = pc.password != nil
	if err := policy.validate(); err != nil {
		return nil, err
	}
	if len(policy.AllowNames) == 0 {
		return nil, errorf("provisioner %q needs at least one name pattern (--allow-name client/team-a-*): without one it could issue nothing", name)
	}
	l := Layout{dir}
	settings, err := LoadSettings(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := loadStepConfig(l)
	if err != nil {
		return nil, err
	}
	for _, p := range cfg.AuthorityConfig.Provisioners {
		if p.GetName() == name {
			return nil, errorf("provisioner %q already exists", name)
		}
	}
	if _, err := provisionerKey(dir, AdminProvisioner, password); err != nil {
		return nil, err // wrong password: refuse before writing anything
	}
	keyPassword := password
	if pc.password != nil {
		if bytes.Equal(pc.password, password) {
			return nil, errorf("provisioner %q: its own password is the CA password, which decrypts the admin key too: choose another", name)
		}
		if !pc.insecure {
			if why := passwordWeakness(pc.password); why != "" {
				return nil, errorf("provisioner %q: %s", name, why)
			}
		}
		keyPassword = pc.password
	}
	p, err := newJWKProvisioner(name, keyPassword, settings)
	if err != nil {
		return nil, err
	}
	cfg.AuthorityConfig.Provisioners = append(cfg.AuthorityConfig.Provisioners, provisioner.Interface(p))
	if settings.Provisioners == nil {
		settings.Provisioners = map[string]*ProvisionerPolicy{}
	}
	settings.Provisioners[name] = &policy
	// mcpca.json first: a provisioner without a policy can issue nothing,
	// so a crash between the two writes fails closed.
	if err := settings.save(dir); err != nil {
		return nil, err
	}
	if err := saveStepConfig(l, cfg); err != nil {
		return nil, err
	}
	return &policy, nil
}
