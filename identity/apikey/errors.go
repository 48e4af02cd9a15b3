package apikey

import (
	"errors"
	"fmt"
)

// errorf formats an error carrying the package prefix: every error returned
// by this package starts with "apikey: ".
func errorf(format string, args ...any) error {
	return fmt.Errorf("apikey: "+format, args...)
}

// Sentinels callers branch on (errors.Is); the errors Verify returns wrap
// one of them and say more.
var (
	// ErrMalformed: the string is not an mcpca API key (prefix, length,
	// alphabet or checksum wrong).
	ErrMalformed = errors.New("not an mcpca API key")
	// ErrUnknown: a well-formed key that the key set does not hold (never
	// issued, revoked, or expired and dropped).
	ErrUnknown = errors.New("unknown or revoked API key")
	// ErrExpired: the key is past its expiry.
	ErrExpired = errors.New("API key expired")
	// ErrAudience: the key is for another resource.
	ErrAudience = errors.New("API key for another audience")
	// ErrRateLimited: too many failed attempts from this source.
	ErrRateLimited = errors.New("too many failed API key attempts")
	// ErrNoKeySet: no fresh key set (never fetched, or the last one is
	// past its next_update): every key is refused, fail closed.
	ErrNoKeySet = errors.New("no current API key set")
)
