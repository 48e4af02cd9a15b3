package ca

import (
	"net/http"
	"strconv"
	"time"

	"github.com/mcpca/mcpca/internal/admission"
)

// DefaultMaxInFlight bounds the CA's requests that may write (POST /sign,
// /renew, /rekey, /revoke) in flight at once. Issuance is CPU bound (a
// token and a CSR signature to verify, a certificate to sign: about 1 ms of
// one core) and its writes share one group commit, so a few dozen requests
// at once keep every core and the store busy; more would only queue, each
// answer later than the one before, while clients time out and retry. The
// excess is shed at once with 503 and Retry-After instead.
const DefaultMaxInFlight = admission.DefaultMax

// refuseBusy answers a request the CA sheds.
func refuseBusy(w http.ResponseWriter, retryAfter time.Duration, max int) {
	secs := int(retryAfter / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusServiceUnavailable, errorf("the CA is at its limit of %d requests in flight (serve --max-in-flight): retry after %d s", max, secs))
}
