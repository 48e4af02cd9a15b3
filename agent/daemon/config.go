package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mcpca/mcpca/agent"
	"github.com/mcpca/mcpca/agent/internal/agenterr"
)

// Config is the configuration of the agent daemon (agent.yaml). See
// scripts/agent.example.yaml for an annotated example.
type Config struct {
	// HealthAddr is the loopback address of /healthz and /metrics
	// ("127.0.0.1:9465"); empty disables the endpoint.
	HealthAddr string `yaml:"health_addr"`
	// FailureThreshold is how many consecutive failed renewals make an
	// identity unhealthy (default DefaultFailureThreshold).
	FailureThreshold int `yaml:"failure_threshold"`
	// Identities are the certificates to keep fresh.
	Identities []IdentityConfig `yaml:"identities"`
}

// IdentityConfig is one certificate the daemon keeps fresh.
type IdentityConfig struct {
	// Name names the identity in logs, health and metrics.
	Name string `yaml:"name"`
	// CAURL is the CA's https URL.
	CAURL string `yaml:"ca_url"`
	// Root is the PEM file of the root(s) the CA's TLS certificate chains
	// to.
	Root string `yaml:"root"`
	// Cert and Key are where the chain and key are kept.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Bundle, if set, receives the trust bundle fetched from the CA.
	Bundle string `yaml:"bundle"`
	// Combined, if set, receives key and chain in one file.
	Combined string `yaml:"combined"`
	// TokenFile, if set, holds an enrolment token used when there is no
	// certificate yet or the certificate has expired.
	TokenFile string `yaml:"token_file"`
	// RenewAt is the fraction of the lifetime after which to renew
	// (default 2/3).
	RenewAt float64 `yaml:"renew_at"`
	// Rekey makes every renewal use a new key.
	Rekey bool `yaml:"rekey"`
	// Hooks run after every renewal.
	Hooks []HookConfig `yaml:"hooks"`
}

// HookConfig is one reload hook: a command (Exec) or a signal to a process
// (SignalPID or PIDFile).
type HookConfig struct {
	Exec      []string `yaml:"exec"`
	Timeout   Duration `yaml:"timeout"`
	SignalPID int      `yaml:"signal_pid"`
	PIDFile   string   `yaml:"pid_file"`
	Signal    string   `yaml:"signal"` // default HUP
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// LoadConfig reads and checks a YAML configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errorf("reading config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, errorf("config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes and checks a YAML configuration. Unknown keys are
// errors, so a misspelt option is not silently ignored.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errorf("no identities")
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, errorf("%s", strings.Join(te.Errors, "; "))
		}
		return nil, errorf("%w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	if c.FailureThreshold == 0 {
		c.FailureThreshold = DefaultFailureThreshold
	}
	if c.FailureThreshold < 0 {
		return errorf("failure_threshold %d is negative", c.FailureThreshold)
	}
	if c.HealthAddr != "" {
		if err := CheckLoopback(c.HealthAddr); err != nil {
			return err
		}
	}
	if len(c.Identities) == 0 {
		return errorf("no identities")
	}
	seen := map[string]bool{}
	for i := range c.Identities {
		id := &c.Identities[i]
		if id.Name == "" {
			return errorf("identity %d: name is required", i+1)
		}
		if seen[id.Name] {
			return errorf("identity %q appears twice", id.Name)
		}
		seen[id.Name] = true
		if err := id.validate(); err != nil {
			return errorf("identity %q: %w", id.Name, err)
		}
	}
	return nil
}

// CheckFiles checks what the identities' files hold now, so that a
// configuration that cannot work fails at once instead of retrying
// forever: every root file must hold certificates, and a certificate and
// key that exist must load and match (both missing is fine: the token file
// enrols; an expired certificate is fine too: it waits for a token).
func (c *Config) CheckFiles() error {
	for i := range c.Identities {
		id := &c.Identities[i]
		if _, err := agent.LoadCertificates(id.Root); err != nil {
			return errorf("identity %q: the CA root: %w", id.Name, err)
		}
		if _, err := agent.LoadKeyPair(id.Cert, id.Key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return errorf("identity %q: %w", id.Name, err)
		}
	}
	return nil
}

func (id *IdentityConfig) validate() error {
	switch {
	case !strings.HasPrefix(id.CAURL, "https://"):
		return fmt.Errorf("ca_url %q must start with https://", id.CAURL)
	case id.Root == "":
		return errors.New("root is required (the CA's root certificate file)")
	case id.Cert == "" || id.Key == "":
		return errors.New("cert and key are required")
	case id.Cert == id.Key:
		return errors.New("cert and key must be different files (use combined for a single file)")
	}
	if id.RenewAt == 0 {
		id.RenewAt = agent.DefaultRenewAt
	}
	if !(id.RenewAt > 0 && id.RenewAt < 1) {
		return fmt.Errorf("renew_at %v is not between 0 and 1", id.RenewAt)
	}
	for i, h := range id.Hooks {
		n := 0
		if len(h.Exec) > 0 {
			n++
		}
		if h.SignalPID != 0 || h.PIDFile != "" {
			n++
		}
		if n != 1 || (h.SignalPID != 0 && h.PIDFile != "") {
			return fmt.Errorf("hook %d: set exactly one of exec, signal_pid or pid_file", i+1)
		}
		if h.Signal != "" {
			if _, err := agent.ParseSignal(h.Signal); err != nil {
				return fmt.Errorf("hook %d: %w", i+1, agenterr.Inner(err))
			}
		}
		if h.Timeout < 0 {
			return fmt.Errorf("hook %d: timeout is negative", i+1)
		}
	}
	return nil
}

// hooks builds the configured hooks; env describes the identity to commands.
func (id *IdentityConfig) hooks() []agent.Hook {
	env := []string{
		"MCPCA_IDENTITY=" + id.Name,
		"MCPCA_CERT_FILE=" + id.Cert,
		"MCPCA_KEY_FILE=" + id.Key,
		"MCPCA_BUNDLE_FILE=" + id.Bundle,
		"MCPCA_COMBINED_FILE=" + id.Combined,
	}
	var out []agent.Hook
	for _, h := range id.Hooks {
		if len(h.Exec) > 0 {
			out = append(out, &agent.Command{Argv: h.Exec, Timeout: time.Duration(h.Timeout), Env: env})
			continue
		}
		sig := syscall.Signal(1) // SIGHUP
		if h.Signal != "" {
			sig, _ = agent.ParseSignal(h.Signal)
		}
		out = append(out, &agent.Signal{PID: h.SignalPID, PIDFile: h.PIDFile, Signal: sig})
	}
	return out
}

func (id *IdentityConfig) sink() *agent.FileSink {
	return &agent.FileSink{CertFile: id.Cert, KeyFile: id.Key, BundleFile: id.Bundle, CombinedFile: id.Combined}
}
