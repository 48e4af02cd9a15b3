package ca

import (
	"log/slog"
	"net/http"

	"github.com/mcpca/mcpca/ca/store"
)

// claimingStore is mcpca's store as step-ca's authority sees it inside the
// server: UseToken claims the token (refused to everyone else at once) and
// queues its record without waiting for the disk, so the token's fsync
// overlaps the signing instead of preceding it. durableWriter makes the
// record durable before the response: no answer leaves the CA before the
// token it consumed is on disk.
type claimingStore struct{ *store.Store }

// UseToken claims the token; see durableWriter.
func (c claimingStore) UseToken(id, tok string) (bool, error) { return c.ClaimToken(id, tok) }

// durableWriter holds back the first byte of a response until every store
// write queued before it is durable (store.Sync). A handler whose last
// store write waited for its commit (a stored certificate, a revocation)
// calls markDurable instead: that commit follows the request's token claim,
// so the extra Sync would only wait for other requests' writes.
type durableWriter struct {
	http.ResponseWriter
	st     *store.Store
	logger *slog.Logger
	synced bool
	failed bool
}

func (d *durableWriter) ensure() {
	if d.synced {
		return
	}
	d.synced = true
	if err := d.st.Sync(); err != nil {
		d.failed = true
		d.logger.Error("store sync failed: request not acknowledged", "event", "store", "error", err.Error())
		writeError(d.ResponseWriter, http.StatusInternalServerError, errorf("internal error; see the CA log"))
	}
}

func (d *durableWriter) WriteHeader(code int) {
	if d.ensure(); !d.failed {
		d.ResponseWriter.WriteHeader(code)
	}
}

func (d *durableWriter) Write(b []byte) (int, error) {
	if d.ensure(); d.failed {
		return 0, errorf("response withheld: the store could not commit")
	}
	return d.ResponseWriter.Write(b)
}

// Flush makes the writes durable first, like WriteHeader.
func (d *durableWriter) Flush() {
	if d.ensure(); !d.failed {
		http.NewResponseController(d.ResponseWriter).Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (d *durableWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// markDurable tells w (when it is a durableWriter) that the handler's last
// store write was committed and waited for. If the store broke meanwhile
// (a claim failed to commit), the response is replaced by an error.
func markDurable(w http.ResponseWriter) {
	if d, ok := w.(*durableWriter); ok && !d.synced {
		if d.st.Err() == nil {
			d.synced = true
			return
		}
		d.ensure()
	}
}
