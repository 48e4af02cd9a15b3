package agent

import "fmt"

// errorf returns an error whose message starts with the package prefix.
func errorf(format string, args ...any) error {
	return fmt.Errorf("agent: "+format, args...)
}
