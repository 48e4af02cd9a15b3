package identity_test

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpca/mcpca/clock"
	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/identity/trust"
	"github.com/mcpca/mcpca/internal/testca"
)

const (
	td     = "example.org"
	alice  = "spiffe://example.org/client/alice"
	server = "spiffe://example.org/server/files"
)

var t0 = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// env is a test PKI with a verifier over a swappable bundle and CRL.
type env struct {
	ca     *testca.CA
	clk    *clock.Fake
	bundle *trust.BundleStore
	crl    *trust.StaticCRL
	v      *identity.Verifier
}

func newEnv(t testing.TB, opts ...identity.VerifyOption) *env {
	t.Helper()
	e := &env{ca: testca.NewCA(t, td, testca.WithTime(t0)), clk: clock.NewFake(t0)}
	b, err := trust.NewBundle([]*x509.Certificate{e.ca.Root()})
	if err != nil {
		t.Fatal(err)
	}
	e.bundle = trust.NewBundleStore(b)
	e.crl = trust.NewStaticCRL(mustCRL(t, e.ca.CreateCRL()))
	opts = append([]identity.VerifyOption{identity.WithTrustDomains(td), identity.WithClock(e.clk), identity.WithCRL(e.crl),
		identity.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	e.v, err = identity.NewVerifier(e.bundle, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustCRL(t testing.TB, der []byte) *trust.CRL {
	t.Helper()
	c, err := trust.ParseCRL(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func bundleOf(t testing.TB, cas ...*testca.CA) *trust.Bundle {
	t.Helper()
	var roots []*x509.Certificate
	for _, ca := range cas {
		roots = append(roots, ca.Root())
	}
	b, err := trust.NewBundle(roots)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// handshake runs one mTLS handshake over loopback and returns the errors
// each side saw. The server writes one byte after a successful handshake
// so that the client observes a rejection of its certificate (in TLS 1.3
// the client's handshake completes before the server checks it).
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (cs tls.ConnectionState, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		tc := tls.Server(c, serverCfg)
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = tc.Write([]byte{1})
		done <- err
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := tls.Client(conn, clientCfg)
	clientErr = tc.Handshake()
	if clientErr == nil {
		var b [1]byte
		if _, err := io.ReadFull(tc, b[:]); err != nil {
			clientErr = err
		}
		cs = tc.ConnectionState()
	}
	if clientErr != nil {
		conn.Close() // unblock the server if it waits on us
	}
	serverErr = <-done
	return cs, serverErr, clientErr
}

// configs returns a server and a client config, each side presenting its
// own SVID and verifying with e.v.
func (e *env) configs(serverSVID, clientSVID *testca.SVID) (*tls.Config, *tls.Config) {
	s := identity.ServerTLSConfig(identity.StaticCertificate{Cert: &serverSVID.TLS}, e.v)
	c := identity.ClientTLSConfig(identity.StaticCertificate{Cert: &clientSVID.TLS}, e.v, identity.WithServerID(mustID(server)))
	return s, c
}

func TestHandshakeSucceeds(t *testing.T) {
	e := newEnv(t)
	srv := e.ca.CreateSVID(server, testca.WithDNSNames("files.example.org"))
	cli := e.ca.CreateSVID(alice, testca.WithRoles("reader"), testca.WithAttributes(map[string]string{"team": "a"}))
	sc, cc := e.configs(srv, cli)
	var got *identity.Identity
	sc.VerifyConnection = chainVerify(sc.VerifyConnection, func(cs tls.ConnectionState) error {
		var err error
		got, err = e.v.PeerIdentity(&cs)
		return err
	})
	cs, serr, cerr := handshake(t, sc, cc)
	if serr != nil || cerr != nil {
		t.Fatalf("server: %v, client: %v", serr, cerr)
	}
	if cs.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", cs.Version)
	}
	if got == nil || got.ID.String() != alice || !got.HasRole("reader") || got.Attributes["team"] != "a" {
		t.Fatalf("server saw %+v", got)
	}
	sid, err := e.v.PeerIdentity(&cs)
	if err != nil || sid.ID.String() != server {
		t.Fatalf("client saw %v, %v", sid, err)
	}
}

func chainVerify(a, b func(tls.ConnectionState) error) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if err := a(cs); err != nil {
			return err
		}
		return b(cs)
	}
}

func TestHandshakeFailures(t *testing.T) {
	e := newEnv(t)
	other := testca.NewCA(t, "other.org", testca.WithTime(t0))
	impostor := testca.NewCA(t, td, testca.WithTime(t0)) // same trust domain, untrusted root
	revokedSerial := big.NewInt(4242)
	e.crl.Set(mustCRL(t, e.ca.CreateCRL(testca.Revoked(revokedSerial))))
	goodServer := e.ca.CreateSVID(server)
	goodClient := e.ca.CreateSVID(alice)

	for _, tc := range []struct {
		name string
		// client is the certificate the client presents (server side check);
		// srv the server's (client side check). Nil means the good one.
		client, srv *testca.SVID
		want        string
	}{
		{
			name:   "client from another trust domain",
			client: other.CreateSVID("spiffe://other.org/client/alice"),
			want:   `identity: spiffe://other.org/client/alice: trust domain "other.org" is not trusted (trusted: example.org)`,
		},
		{
			name: "server from another trust domain",
			srv:  other.CreateSVID("spiffe://other.org/server/files"),
			want: `identity: spiffe://other.org/server/files: trust domain "other.org" is not trusted (trusted: example.org)`,
		},
		{
			name:   "untrusted CA, same trust domain",
			client: impostor.CreateSVID(alice),
			want:   "identity: spiffe://example.org/client/alice: chain does not verify: x509: certificate signed by unknown authority (possibly because of \"x509: ECDSA verification failure\" while trying to verify candidate authority certificate \"example.org Test Root CA\")",
		},
		{
			name:   "CA certificate as leaf",
			client: e.ca.CreateSVID(alice, testca.WithIsCA(), testca.WithKeyUsage(x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign)),
			want:   "identity: certificate is a CA certificate, not a leaf: not an mcpca X509-SVID",
		},
		{
			name:   "expired",
			client: e.ca.CreateSVID(alice, testca.WithValidity(t0.Add(-2*time.Hour), t0.Add(-time.Hour))),
			want:   "identity: spiffe://example.org/client/alice: certificate expired at 2030-06-01T11:00:00Z (now 2030-06-01T12:00:00Z)",
		},
		{
			name: "server not yet valid",
			srv:  e.ca.CreateSVID(server, testca.WithValidity(t0.Add(time.Hour), t0.Add(2*time.Hour))),
			want: "identity: spiffe://example.org/server/files: certificate is not valid before 2030-06-01T13:00:00Z (now 2030-06-01T12:00:00Z)",
		},
		{
			name:   "revoked",
			client: e.ca.CreateSVID(alice, testca.WithSerial(revokedSerial)),
			want:   "identity: spiffe://example.org/client/alice: certificate (serial 1092) is revoked since 2030-06-01T11:59:00Z",
		},
		{
			name:   "unknown critical extension",
			client: e.ca.CreateSVID(alice, testca.WithUnknownCriticalExtension()),
			want:   "identity: spiffe://example.org/client/alice: unknown critical extension 1.3.6.1.4.1.99999.42.1",
		},
		{
			name:   "client without clientAuth",
			client: e.ca.CreateSVID(alice, testca.WithExtKeyUsage(x509.ExtKeyUsageServerAuth)),
			want:   "identity: spiffe://example.org/client/alice: certificate lacks the clientAuth extended key usage",
		},
		{
			name: "server without serverAuth",
			srv:  e.ca.CreateSVID(server, testca.WithExtKeyUsage(x509.ExtKeyUsageClientAuth)),
			want: "identity: spiffe://example.org/server/files: certificate lacks the serverAuth extended key usage",
		},
		{
			name: "client identity as server",
			srv:  e.ca.CreateSVID("spiffe://example.org/client/mallory", testca.WithExtKeyUsage(x509.ExtKeyUsageServerAuth)),
			want: "identity: spiffe://example.org/client/mallory: a client identity cannot act as a server",
		},
		{
			name:   "key usage keyCertSign",
			client: e.ca.CreateSVID(alice, testca.WithKeyUsage(x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign)),
			want:   "identity: leaf certificate has keyCertSign or cRLSign key usage: not an mcpca X509-SVID",
		},
		{
			name:   "two URI SANs",
			client: e.ca.CreateSVID(alice, testca.WithURIs("spiffe://example.org/client/admin")),
			want:   "identity: certificate has 2 URI SANs, an X509-SVID has exactly one: not an mcpca X509-SVID",
		},
		{
			name:   "malformed roles extension",
			client: e.ca.CreateSVID(alice, testca.WithRawRoles([]byte{0x30, 0x03, 0x02, 0x01, 0x01})),
			want:   "identity: roles extension: element 1 is not a UTF8String or PrintableString: malformed extension",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, srv := goodClient, goodServer
			if tc.client != nil {
				client = tc.client
			}
			if tc.srv != nil {
				srv = tc.srv
			}
			sc, cc := e.configs(srv, client)
			_, serr, cerr := handshake(t, sc, cc)
			var got error
			if tc.client != nil {
				got = serr
				if cerr == nil {
					t.Errorf("client did not see the rejection")
				}
			} else {
				got = cerr
			}
			if got == nil || got.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s\n(server %v, client %v)", got, tc.want, serr, cerr)
			}
		})
	}
}

func TestChainTooLong(t *testing.T) {
	e := newEnv(t, identity.WithMaxChainLength(2))
	deep := e.ca.ChildCA()
	s := deep.CreateSVID(alice)
	_, err := e.v.Verify(s.Chain, identity.KindClient)
	assertErr(t, err, "identity: peer chain has 3 certificates, the limit is 2", nil)
	// Presented leaf only: the verified chain (leaf, 2 intermediates, root) is too long.
	e2 := newEnv(t, identity.WithMaxChainLength(3))
	inter := []*x509.Certificate{deep.Cert, e.ca.Cert}
	b, err := trust.NewBundle([]*x509.Certificate{e.ca.Root()}, inter...)
	if err != nil {
		t.Fatal(err)
	}
	e2.bundle.Set(b)
	_, err = e2.v.Verify(s.Chain[:1], identity.KindClient)
	assertErr(t, err, "identity: spiffe://example.org/client/alice: verified chain has 4 certificates, the limit is 3", nil)
}

func TestCRLFailures(t *testing.T) {
	e := newEnv(t)
	cli := e.ca.CreateSVID(alice)
	impostor := testca.NewCA(t, td, testca.WithTime(t0))
	for _, tc := range []struct {
		name string
		set  func()
		want string
	}{
		{
			name: "stale CRL",
			set: func() {
				e.crl.Set(mustCRL(t, e.ca.CreateCRL(testca.ThisUpdate(t0.Add(-3*time.Hour)), testca.NextUpdate(t0.Add(-61*time.Minute)))))
			},
			want: "identity: spiffe://example.org/client/alice: revocation status unknown: the CRL is stale: nextUpdate 2030-06-01T10:59:00Z plus the grace period of 1h0m0s has passed (now 2030-06-01T12:00:00Z)",
		},
		{
			name: "wrongly signed CRL",
			set:  func() { e.crl.Set(mustCRL(t, impostor.CreateCRL())) },
			want: `identity: spiffe://example.org/client/alice: revocation status unknown: trust: CRL signature does not verify with issuer certificate "example.org Test Intermediate CA": x509: ECDSA verification failure`,
		},
		{
			name: "CRL of another issuer",
			set:  func() { e.crl.Set(mustCRL(t, testca.NewCA(t, "other.org").CreateCRL())) },
			want: `identity: spiffe://example.org/client/alice: revocation status unknown: no CRL covers the issuer certificate "example.org Test Intermediate CA"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.set()
			sc, cc := e.configs(e.ca.CreateSVID(server), cli)
			cc.VerifyConnection = nil // only the server checks here
			_, serr, _ := handshake(t, sc, cc)
			if serr == nil || serr.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s", serr, tc.want)
			}
		})
	}
}

func TestNoCRLLoaded(t *testing.T) {
	e := newEnv(t)
	f, err := trust.NewCRLFetcher(t.TempDir() + "/missing.crl")
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(e.bundle, identity.WithTrustDomains(td), identity.WithClock(e.clk), identity.WithCRL(f))
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(e.ca.CreateSVID(alice).Chain, identity.KindClient)
	want := "identity: spiffe://example.org/client/alice: revocation status unknown: trust: no CRL loaded from " + f.Location() + " yet"
	assertErr(t, err, want, nil)
}

func TestStaleCRLPolicyAndGrace(t *testing.T) {
	e := newEnv(t, identity.WithCRLGrace(10*time.Minute))
	cli := e.ca.CreateSVID(alice)
	revoked := e.ca.CreateSVID(alice)
	e.crl.Set(mustCRL(t, e.ca.CreateCRL(testca.RevokedCerts(revoked.Leaf), testca.NextUpdate(t0.Add(time.Minute)))))
	if _, err := e.v.Verify(cli.Chain, identity.KindClient); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(12 * time.Minute) // nextUpdate + 10m grace has passed: fail closed, cache or not
	_, err := e.v.Verify(cli.Chain, identity.KindClient)
	assertErr(t, err, "identity: spiffe://example.org/client/alice: revocation status unknown: the CRL is stale: nextUpdate 2030-06-01T12:01:00Z plus the grace period of 10m0s has passed (now 2030-06-01T12:12:00Z)", nil)

	open, err := identity.NewVerifier(e.bundle, identity.WithTrustDomains(td), identity.WithClock(e.clk),
		identity.WithCRL(e.crl), identity.WithStaleCRLPolicy(identity.CRLFailOpen), identity.WithCRLGrace(10*time.Minute),
		identity.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.Verify(cli.Chain, identity.KindClient); err != nil {
		t.Fatalf("fail-open rejected: %v", err)
	}
	// A stale CRL still revokes.
	_, err = open.Verify(revoked.Chain, identity.KindClient)
	if err == nil || !strings.Contains(err.Error(), "is revoked since") {
		t.Fatalf("fail-open accepted a revoked certificate: %v", err)
	}
}

func TestBundleSwap(t *testing.T) {
	e := newEnv(t, identity.WithStaleCRLPolicy(identity.CRLFailOpen))
	next := testca.NewCA(t, td, testca.WithTime(t0))
	oldCli, newCli := e.ca.CreateSVID(alice), next.CreateSVID(alice)
	srv := e.ca.CreateSVID(server)
	check := func(cli *testca.SVID, want string) {
		t.Helper()
		sc, cc := e.configs(srv, cli)
		// The client trusts everything the server is signed by.
		cc.VerifyConnection = nil
		_, serr, _ := handshake(t, sc, cc)
		if want == "" && serr != nil || want != "" && (serr == nil || serr.Error() != want) {
			t.Fatalf("server error %v, want %q", serr, want)
		}
	}
	check(oldCli, "")
	check(newCli, "identity: spiffe://example.org/client/alice: chain does not verify: x509: certificate signed by unknown authority (possibly because of \"x509: ECDSA verification failure\" while trying to verify candidate authority certificate \"example.org Test Root CA\")")
	e.bundle.Set(bundleOf(t, e.ca, next)) // rotation: both roots
	check(oldCli, "")
	check(newCli, "")
	e.bundle.Set(bundleOf(t, next)) // old root retired
	check(oldCli, "identity: spiffe://example.org/client/alice: chain does not verify: x509: certificate signed by unknown authority (possibly because of \"x509: ECDSA verification failure\" while trying to verify candidate authority certificate \"example.org Test Root CA\")")
	check(newCli, "")
}

func TestCacheInvalidation(t *testing.T) {
	e := newEnv(t)
	cli := e.ca.CreateSVID(alice)
	first, err := e.v.Verify(cli.Chain, identity.KindClient)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := e.v.Verify(cli.Chain, identity.KindClient); again != first {
		t.Fatalf("second verification was not served from the cache")
	}
	// A new bundle (even with the same roots) invalidates the cache.
	e.bundle.Set(bundleOf(t, e.ca))
	again, err := e.v.Verify(cli.Chain, identity.KindClient)
	if err != nil || again == first {
		t.Fatalf("bundle change did not invalidate the cache (%v)", err)
	}
	// A new CRL revoking the leaf takes effect at once.
	e.crl.Set(mustCRL(t, e.ca.CreateCRL(testca.RevokedCerts(cli.Leaf))))
	_, err = e.v.Verify(cli.Chain, identity.KindClient)
	if err == nil || !strings.HasSuffix(err.Error(), "is revoked since 2030-06-01T11:59:00Z") {
		t.Fatalf("revocation did not invalidate the cache: %v", err)
	}
	// A different intermediate list is not a cache hit for the same leaf.
	e.crl.Set(mustCRL(t, e.ca.CreateCRL(testca.NextUpdate(t0.Add(24*time.Hour)))))
	if _, err := e.v.Verify(cli.Chain, identity.KindClient); err != nil {
		t.Fatal(err)
	}
	_, err = e.v.Verify(cli.Chain[:1], identity.KindClient)
	assertErr(t, err, "identity: spiffe://example.org/client/alice: chain does not verify: x509: certificate signed by unknown authority", nil)
	// Time moves past the leaf's expiry: the cached entry does not hide it.
	e.clk.Advance(2 * time.Hour)
	_, err = e.v.Verify(cli.Chain, identity.KindClient)
	assertErr(t, err, "identity: spiffe://example.org/client/alice: certificate expired at 2030-06-01T13:00:00Z (now 2030-06-01T14:00:00Z)", nil)
}

func TestResumedSessionIsChecked(t *testing.T) {
	e := newEnv(t)
	srv, cli := e.ca.CreateSVID(server), e.ca.CreateSVID(alice)
	sc, cc := e.configs(srv, cli)
	cc.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	cc.ServerName = "files"
	if cs, serr, cerr := handshake(t, sc, cc); serr != nil || cerr != nil || cs.DidResume {
		t.Fatalf("first handshake: %v %v resumed=%v", serr, cerr, cs.DidResume)
	}
	if cs, serr, cerr := handshake(t, sc, cc); serr != nil || cerr != nil || !cs.DidResume {
		t.Fatalf("second handshake: %v %v resumed=%v", serr, cerr, cs.DidResume)
	}
	e.crl.Set(mustCRL(t, e.ca.CreateCRL(testca.RevokedCerts(cli.Leaf))))
	_, serr, _ := handshake(t, sc, cc)
	want := fmt.Sprintf("identity: spiffe://example.org/client/alice: certificate (serial %s) is revoked since 2030-06-01T11:59:00Z", cli.Leaf.SerialNumber.Text(16))
	if serr == nil || serr.Error() != want {
		t.Fatalf("resumed session with a revoked client: %v", serr)
	}
}

func TestAuthorizer(t *testing.T) {
	e := newEnv(t)
	srv := e.ca.CreateSVID(server)
	sc := identity.ServerTLSConfig(identity.StaticCertificate{Cert: &srv.TLS}, e.v,
		identity.WithAuthorizer(identity.AuthorizeID(identity.ID{TrustDomain: td, Kind: identity.KindClient, Name: "bob"})))
	cli := e.ca.CreateSVID(alice)
	cc := identity.ClientTLSConfig(identity.StaticCertificate{Cert: &cli.TLS}, e.v, identity.WithServerID(mustID(server)))
	_, serr, _ := handshake(t, sc, cc)
	assertErr(t, serr, "identity: spiffe://example.org/client/alice: identity is not authorized for this connection (authorized: spiffe://example.org/client/bob)", nil)
}

func TestVerifyArguments(t *testing.T) {
	e := newEnv(t)
	_, err := e.v.Verify(nil, identity.KindClient)
	assertErr(t, err, "identity: peer presented no certificate", nil)
	_, err = e.v.Verify(e.ca.CreateSVID(alice).Chain, "robot")
	assertErr(t, err, `identity: invalid peer kind "robot": must be "client" or "server"`, nil)
	_, err = e.v.PeerIdentity(&tls.ConnectionState{})
	assertErr(t, err, "identity: connection has no peer certificate", nil)
	_, err = identity.NewVerifier(e.bundle)
	assertErr(t, err, "identity: verifier needs the trust domains to accept: use WithTrustDomains (or AnyTrustDomain)", nil)
	_, err = identity.NewVerifier(e.bundle, identity.WithTrustDomains("Bad TD"))
	assertErr(t, err, `identity: invalid trust domain "Bad TD": use 1-255 characters of [a-z0-9._-]`, nil)
	_, err = identity.NewVerifier(e.bundle, identity.AnyTrustDomain(), identity.WithMaxChainLength(1))
	assertErr(t, err, "identity: maximum chain length 1 is below 2 (a leaf and a root)", nil)
	_, err = identity.NewVerifier(nil, identity.AnyTrustDomain())
	assertErr(t, err, "identity: verifier needs a trust bundle source", nil)
	v, err := identity.NewVerifier(trust.NewBundleStore(nil), identity.AnyTrustDomain())
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(e.ca.CreateSVID(alice).Chain, identity.KindClient)
	assertErr(t, err, "trust: no bundle loaded", nil)
}

func TestAnyTrustDomainAndCustomOIDs(t *testing.T) {
	ca := testca.NewCA(t, "other.org")
	oids := identity.OIDsFromArc([]int{1, 3, 6, 1, 4, 1, 4242})
	v, err := identity.NewVerifier(trust.NewBundleStore(bundleOf(t, ca)), identity.AnyTrustDomain(), identity.WithOIDs(oids))
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(ca.CreateSVID("spiffe://other.org/client/x", testca.WithOIDs(oids), testca.WithRoles("r")).Chain, identity.KindClient)
	if err != nil || !id.HasRole("r") {
		t.Fatalf("%+v %v", id, err)
	}
}

// go-spiffe's verifier must agree with ours on what a valid SVID is.
func TestGoSPIFFEInterop(t *testing.T) {
	e := newEnv(t, identity.WithStaleCRLPolicy(identity.CRLFailOpen)) // no CRL for the child CA
	b := x509bundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(td), []*x509.Certificate{e.ca.Root()})
	for _, s := range []*testca.SVID{
		e.ca.CreateSVID(alice, testca.WithRoles("reader", "writer"), testca.WithAttributes(map[string]string{"team": "x"})),
		e.ca.CreateSVID(server, testca.WithDNSNames("files.example.org"), testca.WithIPAddresses(net.IPv4(127, 0, 0, 1))),
		e.ca.ChildCA().CreateSVID(alice),
	} {
		if _, err := e.v.Verify(s.Chain, identity.Kind(strings.Split(s.Leaf.URIs[0].Path, "/")[1])); err != nil {
			t.Fatalf("our verifier: %v", err)
		}
		id, _, err := x509svid.Verify(s.Chain, b, x509svid.WithTime(t0))
		if err != nil {
			t.Fatalf("go-spiffe x509svid.Verify: %v", err)
		}
		if id.String() != s.Leaf.URIs[0].String() {
			t.Fatalf("go-spiffe ID %v", id)
		}
	}
}

func TestErrorsAreTyped(t *testing.T) {
	e := newEnv(t)
	_, err := e.v.Verify(e.ca.CreateSVID(alice, testca.WithIsCA()).Chain, identity.KindClient)
	if !errors.Is(err, identity.ErrNotSVID) {
		t.Fatalf("errors.Is(%v, ErrNotSVID) = false", err)
	}
}

func TestUnknownCriticalExtensionInBundleCA(t *testing.T) {
	ca := testca.NewCA(t, td, testca.WithTime(t0), testca.WithCATemplate(func(c *x509.Certificate) {
		c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: testca.UnknownCriticalOID, Critical: true, Value: []byte{5, 0}})
	}))
	v, err := identity.NewVerifier(trust.NewBundleStore(bundleOf(t, ca)), identity.WithTrustDomains(td), identity.WithClock(clock.NewFake(t0)))
	if err != nil {
		t.Fatal(err)
	}
	s := ca.CreateSVID(alice)
	_, err = v.Verify(s.Chain, identity.KindClient)
	assertErr(t, err, `identity: certificate "example.org Test Intermediate CA": unknown critical extension 1.3.6.1.4.1.99999.42.1`, nil)
	_, err = v.Verify(s.Chain[:1], identity.KindClient)
	if err == nil || !strings.HasPrefix(err.Error(), "identity: spiffe://example.org/client/alice: ") {
		t.Fatalf("root with unknown critical extension: %v", err)
	}
	_, err = v.Verify([]*x509.Certificate{s.Leaf, nil}, identity.KindClient)
	assertErr(t, err, "identity: peer chain holds a nil certificate", nil)
}

// Verifications race with bundle and CRL swaps; run with -race.
func TestConcurrentVerifyAndSwap(t *testing.T) {
	e := newEnv(t)
	s := e.ca.CreateSVID(alice)
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				if _, err := e.v.Verify(s.Chain, identity.KindClient); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 50 {
		e.bundle.Set(bundleOf(t, e.ca))
		e.crl.Set(mustCRL(t, e.ca.CreateCRL()))
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestTLSVersions(t *testing.T) {
	e := newEnv(t)
	srv, cli := e.ca.CreateSVID(server), e.ca.CreateSVID(alice)
	sc, cc := e.configs(srv, cli)
	cc.MinVersion, cc.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	_, serr, cerr := handshake(t, sc, cc)
	if serr == nil || cerr == nil || !strings.Contains(serr.Error(), "tls: client offered only unsupported versions") {
		t.Fatalf("TLS 1.2 client accepted by default: server %v, client %v", serr, cerr)
	}
	// Allowed on request, and the peer is still verified.
	sc = identity.ServerTLSConfig(identity.StaticCertificate{Cert: &srv.TLS}, e.v, identity.WithMinVersion(tls.VersionTLS12))
	if cs, serr, cerr := handshake(t, sc, cc); serr != nil || cerr != nil || cs.Version != tls.VersionTLS12 {
		t.Fatalf("TLS 1.2: server %v, client %v, version %x", serr, cerr, cs.Version)
	}
	bad := e.ca.CreateSVID(alice, testca.WithExtKeyUsage(x509.ExtKeyUsageServerAuth))
	_, cc2 := e.configs(srv, bad)
	cc2.MinVersion, cc2.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	_, serr, _ = handshake(t, sc, cc2)
	assertErr(t, serr, "identity: spiffe://example.org/client/alice: certificate lacks the clientAuth extended key usage", nil)
}

// A server identity may call another server as a client; PeerIdentity then
// checks it in the role its ID names.
func TestServerIdentityAsClient(t *testing.T) {
	e := newEnv(t)
	srv, peer := e.ca.CreateSVID(server), e.ca.CreateSVID("spiffe://example.org/server/indexer")
	sc, cc := e.configs(srv, peer)
	var got *identity.Identity
	sc.VerifyConnection = chainVerify(sc.VerifyConnection, func(cs tls.ConnectionState) error {
		var err error
		got, err = e.v.PeerIdentity(&cs)
		return err
	})
	if _, serr, cerr := handshake(t, sc, cc); serr != nil || cerr != nil {
		t.Fatalf("server %v, client %v", serr, cerr)
	}
	if got == nil || got.ID.Kind != identity.KindServer {
		t.Fatalf("got %+v", got)
	}
}
