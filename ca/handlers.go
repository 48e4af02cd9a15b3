package ca

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"regexp"
	"time"

	"github.com/smallstep/certificates/api"
	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/certificates/errs"

	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/pemfile"
)

// handleSign is step-ca's POST /sign, wire-compatible, with mcpca's identity
// rules: step-ca verifies the token (signature, audience, expiry, one-time
// use), then the token's mcpca claims are checked against the identity
// contract and the provisioner's limits, and the leaf gets its SPIFFE shape,
// key usages, lifetime and the roles and attributes extensions. Roles and
// attributes come only from the signed token; a CSR that carries either
// extension is refused. The notBefore/notAfter of the request body are
// ignored: the token decides the lifetime.
func (s *Server) handleSign(w http.ResponseWriter, r *http.Request, st *serverState) {
	var body api.SignRequest
	if code, err := readJSON(r, &body); err != nil {
		s.refuse(w, r, "issue", code, err)
		return
	}
	csr := body.CsrPEM.CertificateRequest
	switch {
	case csr == nil:
		s.refuse(w, r, "issue", http.StatusBadRequest, errorf("missing csr"))
		return
	case body.OTT == "":
		s.refuse(w, r, "issue", http.StatusBadRequest, errorf("missing ott (the one-time token)"))
		return
	}
	// The payload is read once, strictly, before the token is spent; mcpca
	// acts on this reading only, and step-ca verifies the same bytes next.
	payload, code, err := readToken(st, body.OTT, "sign", s.cfg.clock.Now())
	if err != nil {
		s.refuse(w, r, "issue", code, err)
		return
	}
	if err := identity.CheckPublicKey(csr.PublicKey); err != nil {
		s.refuse(w, r, "issue", http.StatusBadRequest, errorf("certificate request: %w", err))
		return
	}
	// The CSR's signature is checked by step-ca's signing (twice), after the
	// token is consumed, as upstream step-ca does: a third check here would
	// cost one more ECDSA verification on every issuance.
	ctx := provisioner.NewContextWithMethod(r.Context(), provisioner.SignMethod)
	signOpts, err := st.auth.Authorize(ctx, body.OTT)
	if err != nil {
		s.refuseStep(w, r, "issue", http.StatusUnauthorized, "token rejected", err)
		return
	}
	// From here on the token's signature, audience, lifetime and one-time
	// use are verified by step-ca, which selected the provisioner by this
	// same "iss" (and the key id): it is the provisioner that signed.
	prov := payload.Issuer
	policy := st.settings.Provisioners[prov]
	if policy == nil {
		s.refuse(w, r, "issue", http.StatusForbidden, errorf("provisioner %q has no mcpca policy in %s: it may not issue identities", prov, s.layout.SettingsFile()))
		return
	}
	id, ttl, err := validateClaims(st.settings, payload.Subject, payload.SANs, payload.Mcpca)
	if err != nil {
		s.refuse(w, r, "issue", http.StatusBadRequest, err)
		return
	}
	claims := payload.Mcpca
	if err := policy.Check(prov, claims, payload.SANs); err != nil {
		s.refuse(w, r, "issue", http.StatusForbidden, err)
		return
	}
	if code, err := s.identityRevokedBefore(id, payload); err != nil {
		s.refuse(w, r, "issue", code, err)
		return
	}
	for _, ext := range csr.Extensions {
		if ext.Id.Equal(st.oids.Roles) || ext.Id.Equal(st.oids.Attributes) {
			s.refuse(w, r, "issue", http.StatusBadRequest, errorf("the CSR carries the extension %s itself: roles and attributes come only from the token", ext.Id))
			return
		}
	}
	modifier, err := leafModifier(st.oids, id, claims)
	if err != nil {
		s.refuse(w, r, "issue", http.StatusBadRequest, err)
		return
	}
	notAfter, err := api.ParseTimeDuration(ttl.String())
	if err != nil {
		s.refuse(w, r, "issue", http.StatusInternalServerError, err)
		return
	}
	opts := provisioner.SignOptions{NotAfter: notAfter}
	chain, err := st.auth.SignWithContext(ctx, csr, opts, append(signOpts, modifier)...)
	if err != nil {
		if se := (*errs.Error)(nil); errors.As(err, &se) && se.StatusCode() == http.StatusBadRequest {
			s.refuseStep(w, r, "issue", http.StatusBadRequest, "signing refused", err)
			return
		}
		s.refuseStep(w, r, "issue", http.StatusForbidden, "signing refused", err)
		return
	}
	markDurable(w) // the certificate's commit followed the token's claim
	s.logCert(r, "issue", "certificate issued", prov, chain[0], st, &identity.Identity{ID: id, Roles: claims.Roles, Attributes: claims.Attributes})
	writeSignResponse(w, chain, st)
}

// leafModifier gives the leaf its mcpca shape: key usages by kind, the roles
// and attributes extensions from the token (encoded by identity's codec), a
// subject naming the identity. The lifetime is set through the sign options.
func leafModifier(oids identity.OIDs, id identity.ID, c *Claims) (provisioner.CertificateModifierFunc, error) {
	var exts []pkix.Extension
	if len(c.Roles) > 0 {
		v, err := identity.EncodeRoles(c.Roles)
		if err != nil {
			return nil, err
		}
		exts = append(exts, pkix.Extension{Id: oids.Roles, Value: v})
	}
	if len(c.Attributes) > 0 {
		v, err := identity.EncodeAttributes(c.Attributes)
		if err != nil {
			return nil, err
		}
		exts = append(exts, pkix.Extension{Id: oids.Attributes, Value: v})
	}
	return func(cert *x509.Certificate, _ provisioner.SignOptions) error {
		cert.Subject = pkix.Name{}
		if len(id.Name) <= 64 {
			cert.Subject.CommonName = id.Name
		}
		cert.IsCA = false
		cert.BasicConstraintsValid = true
		cert.KeyUsage = x509.KeyUsageDigitalSignature
		if id.Kind == identity.KindServer {
			// Servers renew over mTLS too, so they keep clientAuth.
			cert.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		} else {
			cert.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		}
		kept := cert.ExtraExtensions[:0]
		for _, e := range cert.ExtraExtensions {
			if !e.Id.Equal(oids.Roles) && !e.Id.Equal(oids.Attributes) {
				kept = append(kept, e)
			}
		}
		cert.ExtraExtensions = append(kept, exts...)
		return nil
	}, nil
}

// checkCompactJWS accepts only the JWS compact serialisation: three
// base64url segments separated by two dots. step-ca's JOSE parser also
// takes the JSON form, whose unsigned header could carry a second,
// dot-separated payload that a naive reader would take for the signed one.
func checkCompactJWS(token string) error {
	dots := 0
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '.':
			dots++
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return errorf("the token is not a compact JWS (three base64url parts separated by dots)")
		}
	}
	if dots != 2 {
		return errorf("the token is not a compact JWS (three base64url parts separated by dots)")
	}
	return nil
}

// handleRenew is POST /renew (and /rekey with a new key): the client presents
// its current certificate over mTLS and gets a new one with the same identity,
// roles and attributes. Revoked or expired certificates cannot renew, nor
// can a certificate renewed more than RenewalGrace ago, nor one that the
// issuing provisioner's current limits no longer allow (checkRenewable).
func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request, st *serverState, rekey bool) {
	event := "renew"
	if rekey {
		event = "rekey"
	}
	peer, err := s.verifyPeer(r, st)
	if err != nil {
		s.refuse(w, r, event, http.StatusUnauthorized, errorf("%s needs the current certificate as the TLS client certificate: %w", event, err))
		return
	}
	if code, err := s.checkRenewable(st, peer, s.cfg.clock.Now()); err != nil {
		s.refuse(w, r, event, code, err)
		return
	}
	var chain []*x509.Certificate
	if rekey {
		var body api.RekeyRequest
		if code, err := readJSON(r, &body); err != nil {
			s.refuse(w, r, event, code, err)
			return
		}
		csr := body.CsrPEM.CertificateRequest
		if csr == nil {
			s.refuse(w, r, event, http.StatusBadRequest, errorf("missing csr"))
			return
		}
		if err := csr.CheckSignature(); err != nil {
			s.refuse(w, r, event, http.StatusBadRequest, errorf("invalid certificate request: %v", err))
			return
		}
		if err := identity.CheckPublicKey(csr.PublicKey); err != nil {
			s.refuse(w, r, event, http.StatusBadRequest, errorf("certificate request: %w", err))
			return
		}
		chain, err = st.auth.Rekey(peer, csr.PublicKey)
	} else {
		chain, err = st.auth.RenewContext(r.Context(), peer, nil)
	}
	if raced := renewalRaced(err); raced != nil {
		s.refuse(w, r, event, http.StatusUnauthorized, raced)
		return
	}
	if err != nil {
		s.refuseStep(w, r, event, http.StatusUnauthorized, event+" refused", err)
		return
	}
	markDurable(w) // the renewed certificate's commit was waited for
	s.logCert(r, event, "certificate renewed", "", chain[0], st, nil)
	writeSignResponse(w, chain, st)
}

// handleRevoke is POST /revoke: by the holder over mTLS (the request's serial
// must be the client certificate's), or by an operator with a token from a
// provisioner whose subject is the serial. Revoking a certificate revokes
// its renewed successors too (see store.Store.Revoke). With "identity"
// instead of "serial" it revokes a whole identity (revokeIdentity). The CRL
// is regenerated before the answer.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request, st *serverState) {
	var req revokeRequest
	if code, err := readJSON(r, &req); err != nil {
		s.refuse(w, r, "revoke", code, err)
		return
	}
	body := req.RevokeRequest
	switch {
	case req.Identity != "" && body.Serial != "":
		s.refuse(w, r, "revoke", http.StatusBadRequest, errorf("give either a serial or an identity to revoke, not both"))
		return
	case req.Identity != "":
		s.revokeIdentity(w, r, st, &req)
		return
	case body.Serial == "":
		s.refuse(w, r, "revoke", http.StatusBadRequest, errorf("missing serial"))
		return
	}
	if err := checkSerial(body.Serial); err != nil {
		s.refuse(w, r, "revoke", http.StatusBadRequest, err)
		return
	}
	opts := &authority.RevokeOptions{Serial: body.Serial, Reason: body.Reason, ReasonCode: body.ReasonCode, PassiveOnly: true}
	ctx := provisioner.NewContextWithMethod(r.Context(), provisioner.RevokeMethod)
	by := ""
	if body.OTT != "" {
		// Read once, strictly, and checked before the token is spent.
		p, code, err := readToken(st, body.OTT, "revoke", s.cfg.clock.Now())
		if err != nil {
			s.refuse(w, r, "revoke", code, err)
			return
		}
		if p.Subject != body.Serial {
			s.refuse(w, r, "revoke", http.StatusForbidden, errorf("the token's subject %q is not the serial %s being revoked", truncateValue(p.Subject), body.Serial))
			return
		}
		if _, err := st.auth.Authorize(ctx, body.OTT); err != nil {
			s.refuseStep(w, r, "revoke", http.StatusUnauthorized, "token rejected", err)
			return
		}
		opts.OTT = body.OTT
		if err := s.mayRevoke(st, p.Issuer, body.Serial); err != nil {
			s.refuse(w, r, "revoke", http.StatusForbidden, err)
			return
		}
		by = "provisioner:" + p.Issuer
	} else {
		peer, err := s.verifyPeer(r, st)
		if err != nil {
			s.refuse(w, r, "revoke", http.StatusUnauthorized, errorf("revocation needs an operator token or the certificate itself as the TLS client certificate: %w", err))
			return
		}
		opts.Crt = peer
		if got := opts.Crt.SerialNumber.String(); got != body.Serial {
			s.refuse(w, r, "revoke", http.StatusForbidden, errorf("request serial %s is not the client certificate's serial %s", body.Serial, got))
			return
		}
		opts.MTLS = true
		by = "holder"
	}
	if err := st.auth.Revoke(ctx, opts); err != nil {
		// Revoked, but another replica stored a CRL with the number this
		// one generated: generate it again, above that one.
		var ne *store.CRLNumberError
		if !errors.As(err, &ne) {
			s.refuseStep(w, r, "revoke", http.StatusBadRequest, "revocation refused", err)
			return
		}
		s.cfg.logger.Info("another replica stored a CRL with this number meanwhile: generating it again", "event", "crl", "serial", body.Serial)
		if err := regenerateCRL(st.auth); err != nil {
			s.refuse(w, r, "revoke", http.StatusInternalServerError, errorf("serial %s revoked, but the CRL could not be regenerated: %v", body.Serial, err))
			return
		}
	}
	markDurable(w) // the revocation's commit followed the token's claim
	s.cfg.logger.Info("certificate revoked", "event", "revoke", "serial", body.Serial, "serial_hex", hexSerial(body.Serial), "by", by,
		"reason", body.Reason, "reason_code", body.ReasonCode, "client", r.RemoteAddr)
	writeJSON(w, http.StatusOK, &api.RevokeResponse{Status: "ok"})
}

// writeSignResponse writes step-ca's sign response ({"crt", "ca",
// "certChain", "tlsOptions"}) with the PEM of the CA certificates and the
// TLS options encoded once per configuration, not once per request.
func writeSignResponse(w http.ResponseWriter, chain []*x509.Certificate, st *serverState) {
	buf := make([]byte, 0, 1024+1100*len(chain))
	leaf := pemJSON(chain[0])
	buf = append(buf, `{"crt":`...)
	buf = append(buf, leaf...)
	buf = append(buf, `,"ca":`...)
	if len(chain) > 1 {
		buf = append(buf, st.certJSON(chain[1])...)
	} else {
		buf = append(buf, "null"...)
	}
	buf = append(buf, `,"certChain":[`...)
	buf = append(buf, leaf...)
	for _, c := range chain[1:] {
		buf = append(buf, ',')
		buf = append(buf, st.certJSON(c)...)
	}
	buf = append(buf, ']')
	if st.tlsOptionsJSON != nil {
		buf = append(buf, `,"tlsOptions":`...)
		buf = append(buf, st.tlsOptionsJSON...)
	}
	buf = append(buf, "}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(buf)
}

// pemJSON is the JSON string of the certificate's PEM, as api.Certificate
// marshals it.
func pemJSON(c *x509.Certificate) []byte {
	b, _ := json.Marshal(string(pemfile.EncodeCertificates(c)))
	return b
}

// certJSON returns pemJSON(c), from the configuration's CA certificates
// when c is one of them.
func (st *serverState) certJSON(c *x509.Certificate) []byte {
	for _, k := range st.caJSON {
		if k.cert == c || bytes.Equal(k.cert.Raw, c.Raw) {
			return k.json
		}
	}
	return pemJSON(c)
}

// logCert writes one JSON line for an issued or renewed certificate: never a
// token, key or password.
// The identity is read from the certificate unless known (from the token
// the certificate was just issued for) is given.
func (s *Server) logCert(r *http.Request, event, msg, prov string, leaf *x509.Certificate, st *serverState, known *identity.Identity) {
	attrs := []any{"event", event, "serial", leaf.SerialNumber.String(), "serial_hex", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "client", r.RemoteAddr}
	if prov != "" {
		attrs = append(attrs, "provisioner", prov)
	} else if p, err := st.auth.LoadProvisionerByCertificate(leaf); err == nil {
		attrs = append(attrs, "provisioner", p.GetName())
	}
	if known != nil {
		attrs = append(attrs, "identity", known.ID.String(), "roles", known.Roles, "attributes", known.Attributes)
	} else if id, err := identity.FromCertificate(leaf, identity.WithOIDs(st.oids)); err == nil {
		attrs = append(attrs, "identity", id.ID.String(), "roles", id.Roles, "attributes", id.Attributes)
	}
	s.cfg.logger.Info(msg, attrs...)
}

// refuse answers a failed request and logs it (without the token).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, event string, status int, err error) {
	if status >= 500 && s.store != nil && s.store.Unavailable() != nil {
		s.cfg.logger.Error(event+" failed: the database is unreachable", "event", event, "status", http.StatusServiceUnavailable, "error", err.Error(), "client", r.RemoteAddr)
		writeError(w, http.StatusServiceUnavailable, errorf("the CA's database is unreachable; nothing was issued or revoked: try again shortly"))
		return
	}
	if status >= 500 {
		s.cfg.logger.Error(event+" failed", "event", event, "status", status, "error", err.Error(), "client", r.RemoteAddr)
		writeError(w, status, errorf("internal error; see the CA log"))
		return
	}
	s.cfg.logger.Warn(event+" refused", "event", event, "status", status, "error", err.Error(), "client", r.RemoteAddr)
	writeError(w, status, err)
}

// refuseStep answers with a step-ca error: its own status when it is a
// server error, def otherwise.
func (s *Server) refuseStep(w http.ResponseWriter, r *http.Request, event string, def int, what string, err error) {
	var se *errs.Error
	if errors.As(err, &se) && se.StatusCode() >= 500 {
		s.refuse(w, r, event, se.StatusCode(), err)
		return
	}
	s.refuse(w, r, event, def, stepError(what, err))
}

var stepPrefix = regexp.MustCompile(`^(?:[A-Za-z0-9]+\.[A-Za-z0-9]+(?:; |: |;|:))+`)

// stepError turns a step-ca error into a message that names the problem.
func stepError(what string, err error) error {
	msg := stepPrefix.ReplaceAllString(err.Error(), "")
	return errorf("%s: %s", what, msg)
}

// mayRevoke applies the provisioner's limits to revocation: the admin
// provisioner revokes any serial, another only certificates whose identity
// matches its name patterns.
func (s *Server) mayRevoke(st *serverState, prov, serial string) error {
	policy := st.settings.Provisioners[prov]
	if policy == nil {
		return errorf("provisioner %q has no mcpca policy in %s: it may not revoke", prov, s.layout.SettingsFile())
	}
	if policy.Admin {
		return nil
	}
	cert, err := st.auth.GetDatabase().GetCertificate(serial)
	if err != nil || cert == nil {
		return errorf("provisioner %q may revoke only certificates of its names, and serial %s is not in the CA's store", prov, serial)
	}
	id, err := identity.FromCertificate(cert, identity.WithOIDs(st.oids))
	if err != nil {
		return errorf("provisioner %q may not revoke serial %s: %v", prov, serial, err)
	}
	if !policy.allowsName(id.ID.Path()) {
		return errorf("provisioner %q may not revoke %s (allowed names: %s)", prov, id.ID, listOrNone(policy.AllowNames))
	}
	return nil
}

// hexSerial is the hex form of a decimal serial, as the verifier, audit
// logs and policies show it ("" when s is not a decimal number).
func hexSerial(s string) string {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return ""
	}
	return n.Text(16)
}
