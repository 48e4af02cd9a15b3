package audit

import "fmt"

// errorf formats an error carrying the package prefix: every error returned
// by this package starts with "audit: ".
func errorf(format string, args ...any) error {
	return fmt.Errorf("audit: "+format, args...)
}

// truncate shortens untrusted text quoted in a message.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
