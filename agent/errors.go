package agent

import "github.com/mcpca/mcpca/agent/internal/agenterr"

// errorf returns an error whose message starts with the package prefix
// once: an error of this package passed as an argument loses its own.
func errorf(format string, args ...any) error {
	return agenterr.Errorf(format, args...)
}
