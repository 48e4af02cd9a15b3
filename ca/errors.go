package ca

import "fmt"

// errorf formats an error carrying the package prefix: every error returned by
// this package starts with "ca: ".
func errorf(format string, args ...any) error {
	return fmt.Errorf("ca: "+format, args...)
}
