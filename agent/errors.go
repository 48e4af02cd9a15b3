package agent

import (
	"errors"
	"fmt"
)

// errorf returns an error whose message starts with the package prefix.
func errorf(format string, args ...any) error {
	return fmt.Errorf("agent: "+format, args...)
}

// ErrExpired is wrapped by the errors that say a certificate has expired and
// can no longer be renewed; the way back is a new token.
var ErrExpired = errors.New("certificate expired")
