package policy

import (
	"errors"
	"fmt"
)

// prefix starts every error of this package, once.
const prefix = "policy: "

// errorf formats an error with the package's prefix: every error of this
// package starts with "policy: ".
func errorf(format string, args ...any) error {
	return fmt.Errorf(prefix+format, args...)
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

// Error renders "policy: FILE:LINE:COL: MSG".
func (e *LoadError) Error() string {
	return fmt.Sprintf(prefix+"%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

// Unwrap makes errors.Is(err, ErrInvalidPolicy) true.
func (e *LoadError) Unwrap() error { return ErrInvalidPolicy }
