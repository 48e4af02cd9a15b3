package policy

import (
	"errors"
	"fmt"
)

// errorf formats an error with the package's prefix: every error of this
// package starts with "identity: ".
func errorf(format string, args ...any) error {
	return fmt.Errorf("identity: "+format, args...)
}

// ErrInvalidPolicy is wrapped by every load error (syntax, unknown action,
// unknown entity type or attribute, duplicate ID), so callers can tell a bad
// policy from an unreadable file with errors.Is.
var ErrInvalidPolicy = errors.New("invalid policy")

// LoadError is one problem in one policy file, located at File:Line:Column.
type LoadError struct {
	File   string
	Line   int
	Column int
	Msg    string
}

// Error renders "identity: FILE:LINE:COL: MSG".
func (e *LoadError) Error() string {
	return fmt.Sprintf("identity: %s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

// Unwrap makes errors.Is(err, ErrInvalidPolicy) true.
func (e *LoadError) Unwrap() error { return ErrInvalidPolicy }
