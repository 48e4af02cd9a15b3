// Package storetest is the conformance suite of a store for step-ca's
// authority: the same tests run against mcpca's store and against step-ca's
// own bbolt driver, and any other backend (PostgreSQL for several CA
// replicas) passes them before it is used. The suite drives the store only
// through the interfaces step-ca's authority uses.
package storetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/certificates/db"
	"github.com/smallstep/nosql/database"
	"golang.org/x/crypto/ssh"
)

// Opener opens the store named by dir, a fresh t.TempDir per test. Opening
// the same dir again after Shutdown must give back the same records (for
// a networked backend: derive the database or schema name from dir).
type Opener func(t *testing.T, dir string) db.AuthDB

// Full is what a store must implement beyond db.AuthDB: the interfaces
// step-ca's authority finds by type assertion.
type Full interface {
	db.AuthDB
	db.CertificateStorer
	db.CertificateRevocationListDB
	StoreCertificateChain(provisioner.Interface, ...*x509.Certificate) error
	StoreRenewedCertificate(*x509.Certificate, ...*x509.Certificate) error
	GetCertificateData(string) (*db.CertificateData, error)
}

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, *harness)
	}{
		{"TokenUsedOnce", testTokenUsedOnce},
		{"TokenConcurrentRedemption", testTokenConcurrent},
		{"TokenSurvivesReopen", testTokenReopen},
		{"CertificateChainWithProvisioner", testCertificateChain},
		{"CertificateWithoutProvisioner", testCertificatePlain},
		{"RenewedCertificateKeepsProvisioner", testRenewed},
		{"MissingCertificateIsNotFound", testMissing},
		{"RevokeOnce", testRevokeOnce},
		{"RevokeConcurrently", testRevokeConcurrent},
		{"RevocationSurvivesReopen", testRevokeReopen},
		{"CRL", testCRL},
		{"ConcurrentIssuance", testConcurrentIssuance},
		{"SSH", testSSH},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{t: t, dir: t.TempDir(), open: open}
			h.reopen()
			t.Cleanup(func() {
				if err := h.s.Shutdown(); err != nil {
					t.Errorf("Shutdown: %v", err)
				}
			})
			tc.fn(t, h)
		})
	}
}

type harness struct {
	t    *testing.T
	dir  string
	open Opener
	s    Full
}

// reopen shuts the store down (if open) and opens it again on the same dir.
func (h *harness) reopen() {
	h.t.Helper()
	if h.s != nil {
		if err := h.s.Shutdown(); err != nil {
			h.t.Fatalf("Shutdown: %v", err)
		}
	}
	s := h.open(h.t, h.dir)
	f, ok := s.(Full)
	if !ok {
		h.t.Fatalf("%T does not implement the interfaces step-ca's authority asserts (storetest.Full)", s)
	}
	h.s = f
}

var (
	issuerKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issuer       = &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "storetest CA"}}
	serials      sync.Mutex
	nextSerial   = big.NewInt(time.Now().UnixNano())
)

// Cert returns a real certificate with a fresh serial (for backends' own
// tests too).
func Cert(t testing.TB) *x509.Certificate {
	t.Helper()
	serials.Lock()
	sn := new(big.Int).Add(nextSerial, big.NewInt(1))
	nextSerial = sn
	serials.Unlock()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: "leaf " + sn.String()},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &issuerKey.PublicKey, issuerKey)
	if err != nil {
		t.Fatalf("creating a test certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing a test certificate: %v", err)
	}
	return c
}

// Prov is a JWK provisioner for certificate records.
func Prov(name string) provisioner.Interface {
	return &provisioner.JWK{ID: "jwk/" + name, Name: name, Type: "JWK"}
}

func mustUse(t *testing.T, s Full, id string, want bool) {
	t.Helper()
	got, err := s.UseToken(id, "token-"+id)
	if err != nil {
		t.Fatalf("UseToken(%q): %v", id, err)
	}
	if got != want {
		t.Fatalf("UseToken(%q) = %v, want %v", id, got, want)
	}
}

func testTokenUsedOnce(t *testing.T, h *harness) {
	mustUse(t, h.s, "a", true)
	mustUse(t, h.s, "a", false)
	mustUse(t, h.s, "b", true)
	mustUse(t, h.s, "a", false)
}

func testTokenConcurrent(t *testing.T, h *harness) {
	const n = 32
	var wg sync.WaitGroup
	results := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = h.s.UseToken("contested", "token")
		}()
	}
	wg.Wait()
	won := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("UseToken: %v", errs[i])
		}
		if results[i] {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent redemptions of one token succeeded, want exactly 1", won, n)
	}
}

func testTokenReopen(t *testing.T, h *harness) {
	mustUse(t, h.s, "kept", true)
	h.reopen()
	mustUse(t, h.s, "kept", false)
	mustUse(t, h.s, "new", true)
}

func mustGet(t *testing.T, s Full, want *x509.Certificate) {
	t.Helper()
	got, err := s.GetCertificate(want.SerialNumber.String())
	if err != nil {
		t.Fatalf("GetCertificate(%s): %v", want.SerialNumber, err)
	}
	if !got.Equal(want) {
		t.Fatalf("GetCertificate(%s) returned another certificate", want.SerialNumber)
	}
}

func mustData(t *testing.T, s Full, serial, prov string) {
	t.Helper()
	d, err := s.GetCertificateData(serial)
	if err != nil {
		t.Fatalf("GetCertificateData(%s): %v", serial, err)
	}
	if d.Provisioner == nil || d.Provisioner.Name != prov || d.Provisioner.ID != "jwk/"+prov || d.Provisioner.Type != "JWK" {
		t.Fatalf("GetCertificateData(%s) = %+v, want provisioner %s", serial, d.Provisioner, prov)
	}
}

func testCertificateChain(t *testing.T, h *harness) {
	c := Cert(t)
	if err := h.s.StoreCertificateChain(Prov("ops"), c, issuer); err != nil {
		t.Fatalf("StoreCertificateChain: %v", err)
	}
	mustGet(t, h.s, c)
	mustData(t, h.s, c.SerialNumber.String(), "ops")
	h.reopen()
	mustGet(t, h.s, c)
	mustData(t, h.s, c.SerialNumber.String(), "ops")
}

func testCertificatePlain(t *testing.T, h *harness) {
	c := Cert(t)
	if err := h.s.StoreCertificate(c); err != nil {
		t.Fatalf("StoreCertificate: %v", err)
	}
	mustGet(t, h.s, c)
	if _, err := h.s.GetCertificateData(c.SerialNumber.String()); !database.IsErrNotFound(err) {
		t.Fatalf("GetCertificateData of a certificate stored without provisioner: err = %v, want not found", err)
	}
}

func testRenewed(t *testing.T, h *harness) {
	old, renewed, orphan := Cert(t), Cert(t), Cert(t)
	if err := h.s.StoreCertificateChain(Prov("ops"), old); err != nil {
		t.Fatalf("StoreCertificateChain: %v", err)
	}
	if err := h.s.StoreRenewedCertificate(old, renewed, issuer); err != nil {
		t.Fatalf("StoreRenewedCertificate: %v", err)
	}
	mustGet(t, h.s, renewed)
	mustData(t, h.s, renewed.SerialNumber.String(), "ops")
	// Renewing a certificate the store does not know still stores the new one.
	unknown := Cert(t)
	if err := h.s.StoreRenewedCertificate(unknown, orphan); err != nil {
		t.Fatalf("StoreRenewedCertificate of an unknown certificate: %v", err)
	}
	mustGet(t, h.s, orphan)
}

func testMissing(t *testing.T, h *harness) {
	if _, err := h.s.GetCertificate("424242"); !database.IsErrNotFound(err) {
		t.Fatalf("GetCertificate of a missing serial: err = %v, want one database.IsErrNotFound accepts", err)
	}
	if _, err := h.s.GetCertificateData("424242"); !database.IsErrNotFound(err) {
		t.Fatalf("GetCertificateData of a missing serial: err = %v, want not found", err)
	}
	if ok, err := h.s.IsRevoked("424242"); err != nil || ok {
		t.Fatalf("IsRevoked of an unknown serial = %v, %v; want false, nil", ok, err)
	}
}

func rci(serial string, code int) *db.RevokedCertificateInfo {
	return &db.RevokedCertificateInfo{
		Serial: serial, ProvisionerID: "jwk/ops", ReasonCode: code, Reason: "key compromise",
		RevokedAt: time.Unix(1_800_000_000, 0).UTC(), ExpiresAt: time.Unix(1_800_086_400, 0).UTC(),
		TokenID: "tok", MTLS: code == 0,
	}
}

func testRevokeOnce(t *testing.T, h *harness) {
	c := Cert(t)
	serial := c.SerialNumber.String()
	if err := h.s.StoreCertificateChain(Prov("ops"), c); err != nil {
		t.Fatalf("StoreCertificateChain: %v", err)
	}
	if ok, err := h.s.IsRevoked(serial); err != nil || ok {
		t.Fatalf("IsRevoked before Revoke = %v, %v", ok, err)
	}
	if err := h.s.Revoke(rci(serial, 1)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if ok, err := h.s.IsRevoked(serial); err != nil || !ok {
		t.Fatalf("IsRevoked after Revoke = %v, %v", ok, err)
	}
	if err := h.s.Revoke(rci(serial, 4)); !errors.Is(err, db.ErrAlreadyExists) {
		t.Fatalf("second Revoke: err = %v, want db.ErrAlreadyExists", err)
	}
	list, err := h.s.GetRevokedCertificates()
	if err != nil {
		t.Fatalf("GetRevokedCertificates: %v", err)
	}
	if len(*list) != 1 || fmt.Sprint((*list)[0]) != fmt.Sprint(*rci(serial, 1)) {
		t.Fatalf("GetRevokedCertificates = %+v, want the first revocation only", *list)
	}
}

func testRevokeConcurrent(t *testing.T, h *harness) {
	const n = 16
	serial := Cert(t).SerialNumber.String()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.s.Revoke(rci(serial, i%10))
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, db.ErrAlreadyExists):
			t.Fatalf("concurrent Revoke: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent revocations of one serial succeeded, want exactly 1", won, n)
	}
}

func testRevokeReopen(t *testing.T, h *harness) {
	var serials []string
	for i := range 3 {
		c := Cert(t)
		serials = append(serials, c.SerialNumber.String())
		if err := h.s.Revoke(rci(serials[i], i)); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
	}
	h.reopen()
	list, err := h.s.GetRevokedCertificates()
	if err != nil {
		t.Fatalf("GetRevokedCertificates: %v", err)
	}
	var got []string
	for _, r := range *list {
		got = append(got, r.Serial)
	}
	slices.Sort(got)
	slices.Sort(serials)
	if !slices.Equal(got, serials) {
		t.Fatalf("revoked after reopen = %v, want %v", got, serials)
	}
	for _, sn := range serials {
		if ok, err := h.s.IsRevoked(sn); err != nil || !ok {
			t.Fatalf("IsRevoked(%s) after reopen = %v, %v", sn, ok, err)
		}
	}
}

func testCRL(t *testing.T, h *harness) {
	if _, err := h.s.GetCRL(); !database.IsErrNotFound(err) {
		t.Fatalf("GetCRL of an empty store: err = %v, want not found (the authority generates the first CRL on it)", err)
	}
	for n := int64(1); n <= 2; n++ {
		in := &db.CertificateRevocationListInfo{Number: n, ExpiresAt: time.Unix(1_800_000_000+n, 0).UTC(), Duration: 24 * time.Hour, DER: []byte{0x30, byte(n)}}
		if err := h.s.StoreCRL(in); err != nil {
			t.Fatalf("StoreCRL: %v", err)
		}
		got, err := h.s.GetCRL()
		if err != nil {
			t.Fatalf("GetCRL: %v", err)
		}
		if fmt.Sprint(*got) != fmt.Sprint(*in) {
			t.Fatalf("GetCRL = %+v, want %+v", *got, *in)
		}
	}
	h.reopen()
	got, err := h.s.GetCRL()
	if err != nil || got.Number != 2 {
		t.Fatalf("GetCRL after reopen = %+v, %v; want number 2", got, err)
	}
}

func testConcurrentIssuance(t *testing.T, h *harness) {
	const clients, each = 16, 20
	certs := make([]*x509.Certificate, clients*each)
	for i := range certs {
		certs[i] = Cert(t)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(certs))
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w * each; i < (w+1)*each; i++ {
				id := fmt.Sprintf("tok-%d", i)
				if ok, err := h.s.UseToken(id, "token"); err != nil || !ok {
					errs <- fmt.Errorf("UseToken(%s) = %v, %v", id, ok, err)
					return
				}
				if err := h.s.StoreCertificateChain(Prov("ops"), certs[i], issuer); err != nil {
					errs <- fmt.Errorf("StoreCertificateChain: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	h.reopen()
	for i, c := range certs {
		mustGet(t, h.s, c)
		mustUse(t, h.s, fmt.Sprintf("tok-%d", i), false)
	}
}

func testSSH(t *testing.T, h *harness) {
	future := uint64(time.Now().Add(time.Hour).Unix())
	past := uint64(time.Now().Add(-time.Hour).Unix())
	for _, c := range []*ssh.Certificate{
		{Serial: 7, CertType: ssh.HostCert, ValidPrincipals: []string{"Web.Example.COM"}, ValidBefore: future},
		{Serial: 8, CertType: ssh.HostCert, ValidPrincipals: []string{"old.example.com"}, ValidBefore: past},
		{Serial: 9, CertType: ssh.UserCert, ValidPrincipals: []string{"alice"}, ValidBefore: future},
	} {
		c.Key = sshKey(t)
		signer, err := ssh.NewSignerFromKey(issuerKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SignCert(rand.Reader, signer); err != nil {
			t.Fatal(err)
		}
		if err := h.s.StoreSSHCertificate(c); err != nil {
			t.Fatalf("StoreSSHCertificate: %v", err)
		}
	}
	if ok, err := h.s.IsSSHHost("web.example.com"); err != nil || !ok {
		t.Fatalf("IsSSHHost(web.example.com) = %v, %v", ok, err)
	}
	if ok, err := h.s.IsSSHHost("alice"); err != nil || ok {
		t.Fatalf("IsSSHHost(alice) = %v, %v; a user principal is not a host", ok, err)
	}
	got, err := h.s.GetSSHHostPrincipals()
	if err != nil || !slices.Equal(got, []string{"web.example.com"}) {
		t.Fatalf("GetSSHHostPrincipals = %v, %v; want the unexpired host only", got, err)
	}
	if err := h.s.RevokeSSH(rci("7", 1)); err != nil {
		t.Fatalf("RevokeSSH: %v", err)
	}
	if ok, err := h.s.IsSSHRevoked("7"); err != nil || !ok {
		t.Fatalf("IsSSHRevoked(7) = %v, %v", ok, err)
	}
	if ok, err := h.s.IsRevoked("7"); err != nil || ok {
		t.Fatalf("IsRevoked(7) = %v, %v: an SSH revocation is not an X.509 one", ok, err)
	}
	if err := h.s.RevokeSSH(rci("7", 1)); !errors.Is(err, db.ErrAlreadyExists) {
		t.Fatalf("second RevokeSSH: err = %v, want db.ErrAlreadyExists", err)
	}
}

func sshKey(t *testing.T) ssh.PublicKey {
	k, err := ssh.NewPublicKey(&issuerKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
