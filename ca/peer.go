package ca

import (
	"crypto/x509"
	"errors"
	"net/http"
	"time"
)

// verifyPeer verifies the TLS client certificate of r against the CA's roots
// (with the presented and the CA's own intermediates) for client
// authentication, as Go's TLS server would, and says in words what is wrong.
func (s *Server) verifyPeer(r *http.Request, st *serverState) (*x509.Certificate, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, errors.New("none was presented")
	}
	leaf := r.TLS.PeerCertificates[0]
	inters := st.inters.Clone()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inters.AddCert(c)
	}
	now := s.cfg.clock.Now()
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         st.roots,
		Intermediates: inters,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err == nil {
		return leaf, nil
	}
	var inv x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired && now.After(leaf.NotAfter):
		return nil, errorf("the certificate (serial %s) expired at %s and can no longer renew: enrol again with a new token",
			leaf.SerialNumber, leaf.NotAfter.UTC().Format(time.RFC3339))
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return nil, errorf("the certificate (serial %s) is not valid before %s", leaf.SerialNumber, leaf.NotBefore.UTC().Format(time.RFC3339))
	case errors.As(err, &ua):
		return nil, errorf("the certificate (serial %s) is not issued by this CA", leaf.SerialNumber)
	}
	return nil, errorf("the certificate (serial %s) does not verify: %v", leaf.SerialNumber, err)
}
