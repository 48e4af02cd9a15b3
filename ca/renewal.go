package ca

import (
	"crypto/x509"
	"errors"
	"net/http"
	"time"

	"github.com/smallstep/certificates/api"
	"github.com/smallstep/certificates/authority/provisioner"

	"github.com/mcpca/mcpca/ca/store"
	"github.com/mcpca/mcpca/identity"
)

// RenewalGrace is how long a certificate may still renew after its first
// renewal: long enough for a holder that renewed but lost the answer (a
// crash, a dropped connection) to ask again, short enough that a copy of
// a superseded certificate cannot keep a chain of renewals of its own.
const RenewalGrace = 5 * time.Minute

// checkRenewable applies mcpca's rules to a renewal or rekey of peer,
// before step-ca signs anything: a certificate superseded by its own
// renewal more than RenewalGrace ago (renewalGrace in mcpca.json, else
// WithRenewalGrace) no longer renews, and the provisioner
// that issued it must still exist with limits that allow the certificate
// as it is. A revoked certificate (or one of a revoked identity) is refused
// by step-ca's own check and, should a revocation race the renewal, by the
// store when it records the renewal.
func (s *Server) checkRenewable(st *serverState, peer *x509.Certificate, now time.Time) (int, error) {
	serial := peer.SerialNumber.String()
	if err := identity.CheckPublicKey(peer.PublicKey); err != nil {
		return http.StatusForbidden, errorf("certificate %s: %w: enrol again with a new key", serial, err)
	}
	if s.store != nil {
		rn, err := s.store.Renewal(serial)
		if err != nil {
			return http.StatusInternalServerError, err
		}
		grace := s.cfg.renewalGrace
		if g := st.settings.RenewalGrace.Duration; g > 0 {
			grace = g
		}
		switch {
		case rn.ReplacedBy != "":
			return http.StatusForbidden, errorf("certificate %s was replaced by %s, a later renewal of the certificate it was renewed from: only one chain of renewals goes on; use that one, or enrol again with a new token",
				serial, rn.ReplacedBy)
		case !rn.RenewedAt.IsZero() && !now.Before(rn.RenewedAt.Add(grace)):
			return http.StatusForbidden, errorf("certificate %s was renewed at %s (newest serial %s): only the newest certificate renews; use it, or enrol again with a new token",
				serial, rn.RenewedAt.UTC().Format(time.RFC3339), rn.Children[len(rn.Children)-1])
		}
	}
	p, err := st.auth.LoadProvisionerByCertificate(peer)
	if err != nil {
		return http.StatusForbidden, errorf("the provisioner that issued certificate %s no longer exists: enrol again with a token of a current provisioner", serial)
	}
	prov := p.GetName()
	policy := st.settings.Provisioners[prov]
	if policy == nil {
		return http.StatusForbidden, errorf("provisioner %q, which issued certificate %s, has no mcpca policy in %s any more: enrol again with a token of a current provisioner", prov, serial, s.layout.SettingsFile())
	}
	id, err := identity.FromCertificate(peer, identity.WithOIDs(st.oids))
	if err != nil {
		return http.StatusForbidden, errorf("certificate %s: %w", serial, err)
	}
	claims := &Claims{Kind: id.ID.Kind, Name: id.ID.Name, Roles: id.Roles, Attributes: id.Attributes}
	sans := append([]string(nil), id.DNSNames...)
	for _, ip := range id.IPAddresses {
		sans = append(sans, ip.String())
	}
	if why := policy.refusal(prov, claims, sans); why != "" {
		return http.StatusForbidden, errorf("certificate %s no longer fits the limits of provisioner %q (%s): enrol again with a token that fits them", serial, prov, why)
	}
	return 0, nil
}

// renewalRaced turns the store's refusal to record a renewal (the
// certificate or its identity was revoked while it renewed) into the
// answer; nil for any other error.
func renewalRaced(err error) error {
	var rr *store.RenewalRefusedError
	if !errors.As(err, &rr) {
		return nil
	}
	return errorf("renewal refused: %s", rr.Why)
}

// revokeRequest is step-ca's revoke request plus "identity": a SPIFFE ID
// whose every certificate is revoked at once.
type revokeRequest struct {
	api.RevokeRequest
	Identity string `json:"identity,omitempty"`
}

// RevokeIdentityResponse is the answer to an identity revocation: the
// serials it revoked (decimal) and the moment from which the identity's
// older certificates and tokens are refused.
type RevokeIdentityResponse struct {
	Status    string    `json:"status"`
	Identity  string    `json:"identity"`
	RevokedAt time.Time `json:"revokedAt"`
	Serials   []string  `json:"serials"`
}

// revokeIdentity revokes every unexpired certificate of a SPIFFE ID, with
// an operator token whose subject is that ID, from a provisioner whose
// names include it. The identity's certificates issued before now can no
// longer renew, and enrolment tokens for it minted before now are refused
// (handleSign): enrolling again with a new token brings it back.
func (s *Server) revokeIdentity(w http.ResponseWriter, r *http.Request, st *serverState, req *revokeRequest) {
	if s.store == nil {
		s.refuse(w, r, "revoke", http.StatusNotImplemented, errorf("revoking an identity needs mcpca's store; this CA runs on step-ca's database"))
		return
	}
	id, err := identity.ParseID(req.Identity)
	if err != nil {
		s.refuse(w, r, "revoke", http.StatusBadRequest, errorf("identity to revoke %q is not a SPIFFE ID (spiffe://TRUST-DOMAIN/client|server/NAME)", truncateValue(req.Identity)))
		return
	}
	if id.TrustDomain != st.settings.TrustDomain {
		s.refuse(w, r, "revoke", http.StatusBadRequest, errorf("identity %s is not in this CA's trust domain %q", id, st.settings.TrustDomain))
		return
	}
	if req.OTT == "" {
		s.refuse(w, r, "revoke", http.StatusUnauthorized, errorf("revoking an identity needs an operator token whose subject is the identity (mcpca revoke --identity)"))
		return
	}
	now := s.cfg.clock.Now()
	p, code, err := readToken(st, req.OTT, "revoke", now)
	if err != nil {
		s.refuse(w, r, "revoke", code, err)
		return
	}
	if p.Subject != id.String() {
		s.refuse(w, r, "revoke", http.StatusForbidden, errorf("the token's subject %q is not the identity %s being revoked", truncateValue(p.Subject), id))
		return
	}
	// Checked before the token is spent; step-ca verifies next that this
	// "iss" signed it.
	policy := st.settings.Provisioners[p.Issuer]
	switch {
	case policy == nil:
		s.refuse(w, r, "revoke", http.StatusForbidden, errorf("provisioner %q has no mcpca policy in %s: it may not revoke", p.Issuer, s.layout.SettingsFile()))
		return
	case !policy.Admin && !policy.allowsName(id.Path()):
		s.refuse(w, r, "revoke", http.StatusForbidden, errorf("provisioner %q may not revoke %s (allowed names: %s)", p.Issuer, id, listOrNone(policy.AllowNames)))
		return
	}
	ctx := provisioner.NewContextWithMethod(r.Context(), provisioner.RevokeMethod)
	if _, err := st.auth.Authorize(ctx, req.OTT); err != nil {
		s.refuseStep(w, r, "revoke", http.StatusUnauthorized, "token rejected", err)
		return
	}
	reasonCode := req.ReasonCode
	serials, err := s.store.RevokeIdentity(store.IdentityRevocation{ID: id.String(), At: now, Reason: req.Reason, ReasonCode: reasonCode, Provisioner: p.Issuer})
	if err != nil {
		s.refuse(w, r, "revoke", http.StatusInternalServerError, err)
		return
	}
	if err := regenerateCRL(st.auth); err != nil {
		s.refuse(w, r, "revoke", http.StatusInternalServerError, errorf("identity %s revoked, but the CRL could not be regenerated: %v", id, err))
		return
	}
	markDurable(w) // the revocation's commit followed the token's claim
	s.cfg.logger.Info("identity revoked", "event", "revoke", "identity", id.String(), "serials", serials, "by", "provisioner:"+p.Issuer,
		"reason", req.Reason, "reason_code", reasonCode, "client", r.RemoteAddr)
	writeJSON(w, http.StatusOK, &RevokeIdentityResponse{Status: "ok", Identity: id.String(), RevokedAt: now.UTC(), Serials: nonNil(serials)})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// identityRevokedBefore refuses an enrolment token for an identity revoked
// at or after the token was minted: a token handed out before the
// revocation must not bring the identity back.
//
// The status is 403 for a refusal, 500 when the store could not answer.
func (s *Server) identityRevokedBefore(id identity.ID, p *tokenPayload) (int, error) {
	if s.store == nil {
		return 0, nil
	}
	rec, err := s.store.IdentityRevocation(id.String())
	if err != nil {
		return http.StatusInternalServerError, err
	}
	if rec == nil {
		return 0, nil
	}
	var minted int64
	switch {
	case p.IssuedAt != nil:
		minted = *p.IssuedAt
	case p.NotBefore != nil:
		minted = *p.NotBefore
	}
	if minted <= rec.At.Unix() {
		return http.StatusForbidden, errorf("identity %s was revoked at %s, after this token was minted: mint a new token to enrol it again", id, rec.At.UTC().Format(time.RFC3339))
	}
	return 0, nil
}
