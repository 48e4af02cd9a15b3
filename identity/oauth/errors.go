package oauth

import (
	"fmt"
	"net/http"
	"time"
)

// The error codes of RFC 6750 section 3.1, as WWW-Authenticate carries them.
const (
	CodeInvalidRequest    = "invalid_request"
	CodeInvalidToken      = "invalid_token"
	CodeInsufficientScope = "insufficient_scope"
)

// Error is a refused bearer token. Status is the HTTP status to answer
// (400 invalid_request, 401 invalid_token, 403 insufficient_scope, 429
// with RetryAfter), and
// Resource.Challenge turns it into the WWW-Authenticate header.
type Error struct {
	Code        string // one of the Code constants
	Description string // for the error_description parameter and the logs; never the token
	Scope       string // insufficient_scope: the scope the request needs
	// RetryAfter, when set, makes the refusal 429 Too Many Requests: the
	// source presented too many refused credentials (WithFailureLimit)
	// and may try again after this long (the Retry-After header).
	RetryAfter time.Duration
}

// Error implements error.
func (e *Error) Error() string { return "oauth: " + e.Code + ": " + e.Description }

// Status returns the HTTP status of the refusal.
func (e *Error) Status() int {
	if e.RetryAfter > 0 {
		return http.StatusTooManyRequests
	}
	switch e.Code {
	case CodeInvalidRequest:
		return http.StatusBadRequest
	case CodeInsufficientScope:
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

func invalidToken(format string, args ...any) *Error {
	return &Error{Code: CodeInvalidToken, Description: fmt.Sprintf(format, args...)}
}

func errorf(format string, args ...any) error {
	return fmt.Errorf("oauth: "+format, args...)
}
