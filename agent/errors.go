package agent

import (
	"github.com/mcpca/mcpca/agent/internal/agenterr"
	"github.com/mcpca/mcpca/internal/caclient"
)

// errorf returns an error whose message starts with the package prefix
// once: an error of this package passed as an argument loses its own.
func errorf(format string, args ...any) error {
	return agenterr.Errorf(format, args...)
}

// APIError is the CA's refusal of a request (enrolment, renewal, the
// bundle): the HTTP status and the CA's message. Errors of CAClient,
// Source and NewWorkload wrap it; find it with errors.As.
type APIError = caclient.APIError
