package ca

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mcpca/mcpca/identity/trust"
)

// rotationState is the CA generations a serverState runs with.
type rotationState struct {
	file     *rotationFile
	explicit bool // config/rotation.json exists
	issuing  *intermediateGeneration
	signer   crypto.Signer // the issuing intermediate's key (explicit only)
	next     time.Time     // the next switch, zero when none is pending
	others   []heldCA      // the intermediates held that do not issue

	crlMu  sync.Mutex
	crlFor [32]byte // SHA-256 of the current CRL the set was made from
	crlSet []byte
}

// heldCA is an intermediate that no longer (or not yet) issues: its
// certificates still verify, and it signs its CRL.
type heldCA struct {
	gen    int
	cert   *x509.Certificate
	signer crypto.Signer
}

// loadRotationState reads the generations at the server's clock and
// decrypts the keys the server signs with.
func (s *Server) loadRotationState() (*rotationState, error) {
	rf, explicit, err := loadRotation(s.layout)
	if err != nil {
		return nil, err
	}
	now := s.cfg.clock.Now()
	rs := &rotationState{file: rf, explicit: explicit, issuing: rf.issuing(now), next: rf.nextSwitch(now)}
	if !explicit {
		return rs, nil
	}
	if err := rf.syncRootBundle(s.layout); err != nil {
		return nil, err
	}
	for _, ig := range rf.Intermediates {
		k, err := ig.signer(s.password)
		if err != nil {
			return nil, err
		}
		if ig == rs.issuing {
			rs.signer = k
			continue
		}
		rs.others = append(rs.others, heldCA{gen: ig.Generation, cert: ig.cert, signer: k})
	}
	return rs, nil
}

// intermediateCerts returns every intermediate held: the issuing one
// (as the authority has it) first.
func (rs *rotationState) intermediateCerts(issuing []*x509.Certificate) []*x509.Certificate {
	out := append([]*x509.Certificate{}, issuing...)
	for _, h := range rs.others {
		out = append(out, h.cert)
	}
	return out
}

// rotationApplied follows a swap of the state: a new issuing intermediate
// gets the CA a new TLS certificate from it, and the timer re-arms.
func (s *Server) rotationApplied(old, st *serverState) {
	if old.rot == nil || !old.rot.issuing.cert.Equal(st.rot.issuing.cert) {
		s.tlsMu.Lock()
		s.tlsCert = nil
		s.tlsMu.Unlock()
		s.cfg.logger.Info("issuing intermediate in force", "event", "rotation", "generation", st.rot.issuing.Generation,
			"subject", st.rot.issuing.cert.Subject.CommonName, "roots", len(st.rot.file.Roots), "intermediates", len(st.rot.file.Intermediates))
	}
	if s.rotRearm != nil {
		select {
		case s.rotRearm <- struct{}{}:
		default:
		}
	}
}

func (s *Server) startRotationTimer() {
	s.rotStop, s.rotDone, s.rotRearm = make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	go s.rotationTimer()
}

// rotationTimer reloads when the next intermediate's issuesFrom comes, on
// the server's clock, so a root rotation switches issuing without an
// operator.
func (s *Server) rotationTimer() {
	defer close(s.rotDone)
	for {
		next := s.state.Load().rot.next
		var fire <-chan time.Time
		var stop func() bool
		if !next.IsZero() {
			t := s.cfg.clock.NewTimer(next.Sub(s.cfg.clock.Now()))
			fire, stop = t.C(), t.Stop
		}
		select {
		case <-s.rotStop:
			if stop != nil {
				stop()
			}
			return
		case <-s.rotRearm:
			if stop != nil {
				stop()
			}
		case <-fire:
			s.mu.Lock()
			if !s.closed {
				if err := s.reloadLocked("rotation"); err != nil {
					s.cfg.logger.Error("switching to the next intermediate failed; the current one keeps issuing", "event", "rotation", "error", err.Error())
				}
			}
			s.mu.Unlock()
		}
	}
}

// wantsCRLSet reports whether the client asked for the CRL set (one PEM
// CRL per intermediate held), as identity/trust's CRLFetcher does.
func wantsCRLSet(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), trust.CRLSetMediaType) {
				return true
			}
		}
	}
	return false
}

// serveCRLSet answers GET /crl with Accept: application/x-pem-file: the
// current CRL (the issuing intermediate's, as step-ca made it) and, for
// every other intermediate held, the same list signed by that one, with
// the same number and times, so a verifier checks every certificate the
// CA issued against its issuer's CRL.
func (s *Server) serveCRLSet(w http.ResponseWriter, r *http.Request, st *serverState) {
	info, err := st.auth.GetCertificateRevocationList()
	if err != nil || info == nil {
		writeError(w, http.StatusNotFound, errorf("no CRL available"))
		return
	}
	set, err := st.rot.crlSetFor(info.Data)
	if err != nil {
		writeError(w, http.StatusInternalServerError, errorf("signing the CRL set: %v", err))
		return
	}
	w.Header().Set("Content-Type", trust.CRLSetMediaType)
	if !info.ExpiresAt.IsZero() {
		w.Header().Set("Expires", info.ExpiresAt.UTC().Format(http.TimeFormat))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(set)
	}
}

// oidIssuingDistributionPoint is the CRL extension naming where it is
// served; the other intermediates' CRLs carry the current one's.
var oidIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}

func (rs *rotationState) crlSetFor(current []byte) ([]byte, error) {
	sum := sha256.Sum256(current)
	rs.crlMu.Lock()
	defer rs.crlMu.Unlock()
	if rs.crlSet != nil && rs.crlFor == sum {
		return rs.crlSet, nil
	}
	cur, err := x509.ParseRevocationList(current)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	_ = pem.Encode(&out, &pem.Block{Type: "X509 CRL", Bytes: current})
	var ext []pkix.Extension
	for _, e := range cur.Extensions {
		if e.Id.Equal(oidIssuingDistributionPoint) {
			ext = append(ext, e)
		}
	}
	entries := make([]x509.RevocationListEntry, 0, len(cur.RevokedCertificateEntries))
	for _, e := range cur.RevokedCertificateEntries {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: e.SerialNumber, RevocationTime: e.RevocationTime, ReasonCode: e.ReasonCode})
	}
	for _, h := range rs.others {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			RevokedCertificateEntries: entries,
			Number:                    cur.Number,
			ThisUpdate:                cur.ThisUpdate,
			NextUpdate:                cur.NextUpdate,
			ExtraExtensions:           ext,
		}, h.cert, h.signer)
		if err != nil {
			return nil, errorf("CRL of intermediate generation %d: %v", h.gen, err)
		}
		_ = pem.Encode(&out, &pem.Block{Type: "X509 CRL", Bytes: der})
	}
	rs.crlFor, rs.crlSet = sum, out.Bytes()
	return rs.crlSet, nil
}
