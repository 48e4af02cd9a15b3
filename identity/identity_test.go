package identity_test

import (
	"crypto/sha256"
	"crypto/x509"
	"net"
	"reflect"
	"testing"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/testca"
)

func TestFromCertificate(t *testing.T) {
	ca := testca.NewCA(t, "example.org")
	s := ca.CreateSVID("spiffe://example.org/server/files",
		testca.WithRoles("reader", "admin"),
		testca.WithAttributes(map[string]string{"team": "search"}),
		testca.WithDNSNames("files.example.org"),
		testca.WithIPAddresses(net.IPv4(127, 0, 0, 1)))
	id, err := identity.FromCertificate(s.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	want := identity.ID{TrustDomain: "example.org", Kind: identity.KindServer, Name: "files"}
	if id.ID != want {
		t.Errorf("ID = %v, want %v", id.ID, want)
	}
	if !reflect.DeepEqual(id.Roles, []string{"reader", "admin"}) || !id.HasRole("admin") || id.HasRole("writer") {
		t.Errorf("Roles = %q", id.Roles)
	}
	if !reflect.DeepEqual(id.Attributes, map[string]string{"team": "search"}) {
		t.Errorf("Attributes = %q", id.Attributes)
	}
	if id.Serial.Cmp(s.Leaf.SerialNumber) != 0 || id.SerialHex() != s.Leaf.SerialNumber.Text(16) {
		t.Errorf("Serial = %v", id.Serial)
	}
	if id.Fingerprint != sha256.Sum256(s.Leaf.Raw) || len(id.FingerprintHex()) != 64 {
		t.Errorf("Fingerprint = %x", id.Fingerprint)
	}
	if !id.NotBefore.Equal(s.Leaf.NotBefore) || !id.NotAfter.Equal(s.Leaf.NotAfter) {
		t.Errorf("validity %v..%v", id.NotBefore, id.NotAfter)
	}
	if !reflect.DeepEqual(id.DNSNames, []string{"files.example.org"}) || len(id.IPAddresses) != 1 {
		t.Errorf("SANs %v %v", id.DNSNames, id.IPAddresses)
	}
}

func TestFromCertificateNoExtensions(t *testing.T) {
	ca := testca.NewCA(t, "example.org")
	id, err := identity.FromCertificate(ca.CreateSVID("spiffe://example.org/client/alice").Leaf)
	if err != nil {
		t.Fatal(err)
	}
	if id.Roles != nil || id.Attributes == nil || len(id.Attributes) != 0 {
		t.Fatalf("Roles %q Attributes %q", id.Roles, id.Attributes)
	}
}

func TestFromCertificateCustomOIDs(t *testing.T) {
	arc, err := identity.ParseOIDArc("1.3.6.1.4.1.4242.7")
	if err != nil {
		t.Fatal(err)
	}
	oids := identity.OIDsFromArc(arc)
	ca := testca.NewCA(t, "example.org")
	leaf := ca.CreateSVID("spiffe://example.org/client/alice", testca.WithOIDs(oids), testca.WithRoles("reader")).Leaf
	id, err := identity.FromCertificate(leaf, identity.WithOIDs(oids))
	if err != nil || !reflect.DeepEqual(id.Roles, []string{"reader"}) {
		t.Fatalf("with OIDs: %q, %v", id.Roles, err)
	}
	id, err = identity.FromCertificate(leaf)
	if err != nil || id.Roles != nil {
		t.Fatalf("default OIDs must not see custom-arc roles: %q, %v", id.Roles, err)
	}
}

func TestFromCertificateErrors(t *testing.T) {
	ca := testca.NewCA(t, "example.org")
	const alice = "spiffe://example.org/client/alice"
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want string
		is   error
	}{
		{"nil", nil, "identity: no certificate: not an mcpca X509-SVID", identity.ErrNotSVID},
		{"CA certificate as leaf", ca.CreateSVID(alice, testca.WithIsCA()).Leaf, "identity: certificate is a CA certificate, not a leaf: not an mcpca X509-SVID", identity.ErrNotSVID},
		{"intermediate as leaf", ca.Cert, "identity: certificate is a CA certificate, not a leaf: not an mcpca X509-SVID", identity.ErrNotSVID},
		{"two URI SANs", ca.CreateSVID(alice, testca.WithURIs("spiffe://example.org/client/bob")).Leaf, "identity: certificate has 2 URI SANs, an X509-SVID has exactly one: not an mcpca X509-SVID", identity.ErrNotSVID},
		{"no URI SAN", ca.CreateSVID(alice, testca.WithTemplate(func(c *x509.Certificate) { c.URIs = nil })).Leaf, "identity: certificate has no URI SAN (SPIFFE ID): not an mcpca X509-SVID", identity.ErrNotSVID},
		{"no digitalSignature", ca.CreateSVID(alice, testca.WithKeyUsage(x509.KeyUsageKeyEncipherment)).Leaf, "identity: certificate lacks the digitalSignature key usage: not an mcpca X509-SVID", identity.ErrNotSVID},
		{"no key usage", ca.CreateSVID(alice, testca.WithKeyUsage(0)).Leaf, "identity: certificate lacks the digitalSignature key usage: not an mcpca X509-SVID", identity.ErrNotSVID},
		{"keyCertSign", ca.CreateSVID(alice, testca.WithKeyUsage(x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign)).Leaf, "identity: leaf certificate has keyCertSign or cRLSign key usage: not an mcpca X509-SVID", identity.ErrNotSVID},
		{"cRLSign", ca.CreateSVID(alice, testca.WithKeyUsage(x509.KeyUsageDigitalSignature|x509.KeyUsageCRLSign)).Leaf, "identity: leaf certificate has keyCertSign or cRLSign key usage: not an mcpca X509-SVID", identity.ErrNotSVID},
		{"https URI", ca.CreateSVID("https://example.org/client/alice").Leaf, `identity: invalid SPIFFE ID "https://example.org/client/alice": not an mcpca X509-SVID`, identity.ErrNotSVID},
		{"query in ID", ca.CreateSVID("spiffe://example.org/client/alice?x=1").Leaf, `identity: invalid SPIFFE ID "spiffe://example.org/client/alice?x=1": not an mcpca X509-SVID`, identity.ErrNotSVID},
		{"port in ID", ca.CreateSVID("spiffe://example.org:8443/client/alice").Leaf, `identity: invalid SPIFFE ID "spiffe://example.org:8443/client/alice": not an mcpca X509-SVID`, identity.ErrNotSVID},
		{"unknown kind", ca.CreateSVID("spiffe://example.org/agent/alice").Leaf, `identity: invalid kind "agent": must be "client" or "server"`, nil},
		{"nested name", ca.CreateSVID("spiffe://example.org/client/a/b").Leaf, `identity: invalid name "a/b": use 1-128 characters of [A-Za-z0-9._-]`, nil},
		{"upper-case trust domain", ca.CreateSVID("spiffe://Example.org/client/a").Leaf, `identity: invalid trust domain "Example.org": use 1-255 characters of [a-z0-9._-]`, nil},
		{"malformed roles", ca.CreateSVID(alice, testca.WithRawRoles([]byte{0x30, 0x05, 0x0c})).Leaf, "identity: roles extension: not a DER SEQUENCE OF UTF8String: malformed extension", identity.ErrMalformedExtension},
		{"malformed attributes", ca.CreateSVID(alice, testca.WithRawAttributes([]byte{0x30, 0x02, 0x0c, 0x00})).Leaf, "identity: attributes extension: element 1 is not a SEQUENCE: malformed extension", identity.ErrMalformedExtension},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := identity.FromCertificate(tc.cert)
			if id != nil {
				t.Errorf("FromCertificate returned %+v with an error", id)
			}
			assertErr(t, err, tc.want, tc.is)
		})
	}
}

func TestParseID(t *testing.T) {
	id, err := identity.ParseID("spiffe://example.org/client/alice")
	if err != nil {
		t.Fatal(err)
	}
	if id.String() != "spiffe://example.org/client/alice" || id.Path() != "client/alice" || id.URL().String() != id.String() {
		t.Fatalf("round trip: %v %v %v", id, id.Path(), id.URL())
	}
	for _, tc := range []struct{ in, want string }{
		{"https://example.org/client/a", `identity: invalid SPIFFE ID "https://example.org/client/a": scheme must be spiffe://`},
		{"spiffe://example.org", `identity: invalid SPIFFE ID "spiffe://example.org": want spiffe://<trust-domain>/<client|server>/<name>`},
		{"spiffe://example.org/client", `identity: invalid SPIFFE ID "spiffe://example.org/client": want spiffe://<trust-domain>/<client|server>/<name>`},
		{"spiffe:///client/a", `identity: invalid trust domain "": use 1-255 characters of [a-z0-9._-]`},
		{"spiffe://td/client/..", `identity: invalid name "..": use 1-128 characters of [A-Za-z0-9._-]`},
		{"spiffe://td/client/", `identity: invalid name "": use 1-128 characters of [A-Za-z0-9._-]`},
	} {
		_, err := identity.ParseID(tc.in)
		assertErr(t, err, tc.want, nil)
	}
}

func TestParseOIDArc(t *testing.T) {
	arc, err := identity.ParseOIDArc("1.3.6.1.4.1.99999.1")
	if err != nil || !arc.Equal(identity.DefaultOIDArc) {
		t.Fatalf("ParseOIDArc = %v, %v", arc, err)
	}
	if o := identity.OIDsFromArc(arc); o.Roles.String() != "1.3.6.1.4.1.99999.1.1" || o.Attributes.String() != "1.3.6.1.4.1.99999.1.2" {
		t.Fatalf("OIDs %v", o)
	}
	for _, tc := range []struct{ in, want string }{
		{"1", `identity: invalid OID arc "1": need at least two components`},
		{"1.3.x", `identity: invalid OID arc "1.3.x": component 3 ("x") is not a decimal number below 2^31`},
		{"1.3.2147483648", `identity: invalid OID arc "1.3.2147483648": component 3 ("2147483648") is not a decimal number below 2^31`},
		{"1.03", `identity: invalid OID arc "1.03": component 2 ("03") is not a decimal number below 2^31`},
		{"3.1", `identity: invalid OID arc "3.1": first components out of range`},
		{"1.40", `identity: invalid OID arc "1.40": first components out of range`},
	} {
		_, err := identity.ParseOIDArc(tc.in)
		assertErr(t, err, tc.want, nil)
	}
}
