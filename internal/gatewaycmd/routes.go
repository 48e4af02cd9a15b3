package gatewaycmd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// route is one MCP endpoint of the gateway: a path, the upstream behind
// it and the policy that decides its requests.
type route struct {
	Path           string  `yaml:"path"`
	Upstream       string  `yaml:"upstream"`
	UpstreamCmd    command `yaml:"upstream_cmd"`
	Policy         string  `yaml:"policy"`
	UpstreamMTLS   bool    `yaml:"upstream_mtls"`
	UpstreamID     string  `yaml:"upstream_id"`
	MaxPerIdentity int     `yaml:"max_per_identity"`
	Audit          string  `yaml:"audit"`    // its own audit log ("": --audit's)
	Resource       string  `yaml:"resource"` // its OAuth resource identifier ("": https://LISTEN/PATH)
}

// fileConfig is the --config file: the routes.
//
//	routes:
//	  - path: /files/mcp
//	    upstream: http://127.0.0.1:3001/mcp
//	    policy: files.cedar            # relative to this file
//	  - path: /search/mcp
//	    upstream_cmd: [node, search.js, stdio]   # or "node search.js stdio"
//	    policy: search.cedar
//	    audit: search-audit.log        # its own (default: --audit)
//	    resource: https://gw.example.com/search/mcp   # with --token-issuer
type fileConfig struct {
	Routes []route `yaml:"routes"`
}

// loadRoutes reads and checks a --config file.
func loadRoutes(path string) ([]route, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var fc fileConfig
	if err := dec.Decode(&fc); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	if len(fc.Routes) == 0 {
		return nil, fmt.Errorf("--config %s: no routes", path)
	}
	seen := map[string]bool{}
	for i := range fc.Routes {
		r := &fc.Routes[i]
		if err := r.check(seen); err != nil {
			return nil, fmt.Errorf("--config %s: route %d: %w", path, i+1, err)
		}
		if !filepath.IsAbs(r.Policy) {
			r.Policy = filepath.Join(filepath.Dir(path), r.Policy)
		}
		if r.Audit != "" && !filepath.IsAbs(r.Audit) {
			r.Audit = filepath.Join(filepath.Dir(path), r.Audit)
		}
	}
	return fc.Routes, nil
}

func (r *route) check(seen map[string]bool) error {
	switch {
	case !strings.HasPrefix(r.Path, "/"):
		return fmt.Errorf("path %q must start with /", r.Path)
	case seen[r.Path]:
		return fmt.Errorf("path %q appears twice", r.Path)
	case (r.Upstream == "") == (len(r.UpstreamCmd) == 0):
		return errors.New("give one of upstream and upstream_cmd")
	case r.Policy == "":
		return errors.New("policy is required")
	case r.MaxPerIdentity < 0:
		return errors.New("max_per_identity must not be negative")
	case r.UpstreamID != "" && !r.UpstreamMTLS:
		return errors.New("upstream_id needs upstream_mtls")
	}
	seen[r.Path] = true
	return nil
}

// command is a route's upstream_cmd: a list of words, or one string split
// into words as a shell would (splitCommand).
type command []string

func (c *command) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var s string
		if err := n.Decode(&s); err != nil {
			return err
		}
		argv, err := splitCommand(s)
		if err != nil {
			return fmt.Errorf("line %d: upstream_cmd: %w", n.Line, err)
		}
		*c = argv
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*c = list
	return nil
}
