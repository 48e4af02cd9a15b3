// Package agenterr is the one error policy of the agent layer (package agent
// and package agent/daemon, which share the "agent: " prefix of the `mcpca
// agent` command): a message starts with the prefix exactly once, however
// many functions of the layer add context on the way out, and the chain
// stays intact for errors.Is and errors.As.
package agenterr

import "fmt"

// Prefix starts every message of the agent layer.
const Prefix = "agent: "

// Error is an error of the agent layer: Prefix, then the message of Err.
type Error struct{ Err error }

func (e *Error) Error() string { return Prefix + e.Err.Error() }

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// Errorf formats an error of the agent layer. Arguments that are already
// errors of the layer are formatted without their prefix (and wrapped, with
// %w), so context added inside the layer never repeats it.
func Errorf(format string, args ...any) error {
	for i, a := range args {
		if e, ok := a.(*Error); ok {
			args[i] = e.Err
		}
	}
	return &Error{fmt.Errorf(format, args...)}
}

// Inner returns err without the layer's prefix when it is an error of the
// layer, for context added by plain fmt.Errorf before Errorf adds the prefix.
func Inner(err error) error {
	if e, ok := err.(*Error); ok {
		return e.Err
	}
	return err
}
