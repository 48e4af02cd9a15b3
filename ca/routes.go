package ca

import (
	"net/http"
	"strings"
)

// stepReadRoutes are the read-only endpoints of step-ca's API the CA passes
// to step-ca's own handlers, under / and /1.0. Every other request is
// answered by mcpca's handlers (sign, renew, rekey, revoke) or refused:
// step-ca's router also serves endpoints that would bypass mcpca's checks,
// /re-sign above all (step-ca's renewal, which trusts the TLS peer
// certificate that mcpca's TLS layer only requests and does not verify),
// and SSH endpoints this CA has no keys for.
var stepReadRoutes = map[string]bool{
	"/version": true, "/health": true, "/roots": true, "/roots.pem": true,
	"/intermediates": true, "/intermediates.pem": true, "/crl": true, "/federation": true,
	"/provisioners": true,
}

// stepRouteAllowed reports whether r may go to step-ca's router.
func stepRouteAllowed(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := strings.TrimPrefix(r.URL.Path, "/1.0")
	if stepReadRoutes[p] {
		return true
	}
	// /root/<sha256> and /provisioners/<kid>/encrypted-key.
	if rest, ok := strings.CutPrefix(p, "/root/"); ok {
		return rest != "" && !strings.Contains(rest, "/")
	}
	if rest, ok := strings.CutPrefix(p, "/provisioners/"); ok {
		kid, tail, _ := strings.Cut(rest, "/")
		return kid != "" && tail == "encrypted-key"
	}
	return false
}

// refuseRoute answers a request for an endpoint the CA does not serve.
func refuseRoute(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		writeError(w, http.StatusNotFound, errorf("%s %s is not served by this CA: it serves POST /1.0/sign, /1.0/renew, /1.0/rekey, /1.0/revoke, /1.0/oauth/token and /1.0/apikeys", r.Method, r.URL.Path))
		return
	}
	writeError(w, http.StatusNotFound, errorf("%s %s is not served by this CA", r.Method, r.URL.Path))
}
