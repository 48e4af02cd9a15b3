package ca

import (
	"regexp"

	"github.com/smallstep/certificates/authority/provisioner"
)

var provisionerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// AddProvisioner adds a JWK provisioner restricted by policy to the CA in dir
// (its key encrypted with the CA password). A running CA picks it up on
// Reload (SIGHUP to `mcpca serve`).
func AddProvisioner(dir string, password []byte, name string, policy ProvisionerPolicy) (*ProvisionerPolicy, error) {
	if !provisionerName.MatchString(name) {
		return nil, errorf("invalid provisioner name %q: use 1-64 characters of [a-z0-9_.-]", name)
	}
	policy.Admin = false
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
	p, err := newJWKProvisioner(name, password, settings)
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
