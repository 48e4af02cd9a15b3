package ca

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"

	"github.com/smallstep/certificates/authority/provisioner"

	"github.com/mcpca/mcpca/internal/atomicfile"
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

// ExportProvisioner writes into out (a new directory) what a delegated team
// needs to mint tokens of the provisioner name and nothing else: a
// config/ca.json holding only that provisioner (its key encrypted with its
// own password), a config/mcpca.json with only its limits, and the root
// certificate. `mcpca token --dir OUT --provisioner NAME --password-file F`
// and `mcpca revoke --dir OUT ...` work from it; it holds no other
// provisioner's key (the admin key included), no CA key and no password.
// Only provisioners with their own password can be exported: the key of one
// encrypted with the CA password would need the CA password to use.
func ExportProvisioner(dir, name, out string) error {
	l := Layout{dir}
	settings, err := LoadSettings(dir)
	if err != nil {
		return err
	}
	policy := settings.Provisioners[name]
	switch {
	case name == AdminProvisioner || (policy != nil && policy.Admin):
		return errorf("provisioner %q is the CA's own, unrestricted: give a team a provisioner of its own (mcpca provisioner add NAME --provisioner-password-file F) and export that", name)
	case policy == nil:
		return errorf("no provisioner %q in %s", name, l.SettingsFile())
	case !policy.OwnPassword:
		return errorf("provisioner %q has no password of its own: its key is encrypted with the CA password, which the team would need; add a provisioner with --provisioner-password-file", name)
	}
	raw, err := os.ReadFile(l.StepConfig())
	if err != nil {
		return errorf("reading step-ca configuration: %w", err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return errorf("%s is corrupted: %v", l.StepConfig(), err)
	}
	var auth map[string]json.RawMessage
	if err := json.Unmarshal(cfg["authority"], &auth); err != nil {
		return errorf("%s is corrupted: %v", l.StepConfig(), err)
	}
	var provs []json.RawMessage
	if err := json.Unmarshal(auth["provisioners"], &provs); err != nil {
		return errorf("%s is corrupted: %v", l.StepConfig(), err)
	}
	var kept []json.RawMessage
	for _, p := range provs {
		var head struct{ Name string }
		if json.Unmarshal(p, &head) == nil && head.Name == name {
			kept = append(kept, p)
		}
	}
	if len(kept) != 1 {
		return errorf("no provisioner %q in %s", name, l.StepConfig())
	}
	// Only what minting reads: the provisioners; no admin settings, paths
	// or anything else of the CA's.
	stepCfg, err := json.MarshalIndent(map[string]any{"authority": map[string]any{"provisioners": kept}}, "", "  ")
	if err != nil {
		return errorf("encoding the exported configuration: %v", err)
	}
	team := *settings
	team.Provisioners = map[string]*ProvisionerPolicy{name: policy}
	teamSettings, err := json.MarshalIndent(&team, "", "  ")
	if err != nil {
		return errorf("encoding the exported settings: %v", err)
	}
	root, err := os.ReadFile(l.RootCert())
	if err != nil {
		return errorf("reading the root certificate: %w", err)
	}
	if err := os.Mkdir(out, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return errorf("%s already exists: export into a new directory", out)
		}
		return errorf("creating %s: %w", out, err)
	}
	o := Layout{out}
	for _, d := range []string{filepath.Dir(o.StepConfig()), filepath.Dir(o.RootCert())} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return errorf("creating %s: %w", d, err)
		}
	}
	// All or nothing: a team never gets half a directory.
	if err := atomicfile.WriteFiles(
		atomicfile.File{Path: o.StepConfig(), Data: append(stepCfg, '\n'), Mode: 0o600},
		atomicfile.File{Path: o.SettingsFile(), Data: append(teamSettings, '\n'), Mode: 0o600},
		atomicfile.File{Path: o.RootCert(), Data: root, Mode: 0o600},
	); err != nil {
		_ = os.RemoveAll(out)
		return errorf("writing %s: %w", out, err)
	}
	return nil
}
