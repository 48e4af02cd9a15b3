package identity_test

import (
	"crypto/x509"
	"maps"
	"slices"
	"strings"
	"testing"

	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/mcpca/mcpca/identity"
	"github.com/mcpca/mcpca/internal/testca"
)

func FuzzDecodeRoles(f *testing.F) {
	for _, roles := range [][]string{nil, {"reader"}, {"a", "b.c", "d-e_f"}, nRoles(identity.MaxRoles)} {
		enc, err := identity.EncodeRoles(roles)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add(der(seq(str(cbasn1.PrintableString, "reader"))))
	f.Add(der(seq(utf8s("a"), utf8s("a"))))
	f.Add(der(seq(utf8s(strings.Repeat("a", 65)))))
	f.Add([]byte{0x30, 0x80, 0x0c, 0x01, 'a', 0, 0})
	f.Add([]byte{0x30, 0x03, 0x0c, 0x05, 'a'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		roles, err := identity.DecodeRoles(data)
		if err != nil {
			if roles != nil || !strings.HasPrefix(err.Error(), "identity: ") {
				t.Fatalf("bad error result: %q, %v", roles, err)
			}
			return
		}
		if err := identity.ValidateRoles(roles); err != nil {
			t.Fatalf("decoded roles fail validation: %v", err)
		}
		enc, err := identity.EncodeRoles(roles)
		if err != nil {
			t.Fatalf("EncodeRoles(DecodeRoles(x)): %v", err)
		}
		again, err := identity.DecodeRoles(enc)
		if err != nil || !slices.Equal(again, roles) {
			t.Fatalf("decode(encode(x)) = %q, %v; want %q", again, err, roles)
		}
	})
}

func FuzzDecodeAttributes(f *testing.F) {
	for _, attrs := range []map[string]string{{}, {"team": "a"}, {"k": strings.Repeat("v", 256), "z": "żółć"}, nAttrs(identity.MaxAttributes)} {
		enc, err := identity.EncodeAttributes(attrs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add(der(seq(pair("a", "1"), pair("a", "2"))))
	f.Add(der(seq(seq(utf8s("a")))))
	f.Add(der(seq(seq(str(cbasn1.PrintableString, "k"), str(cbasn1.PrintableString, "V a")))))
	f.Add(der(seq(pair("k", "\xff"))))
	f.Add([]byte{0x30})
	f.Fuzz(func(t *testing.T, data []byte) {
		attrs, err := identity.DecodeAttributes(data)
		if err != nil {
			if attrs != nil || !strings.HasPrefix(err.Error(), "identity: ") {
				t.Fatalf("bad error result: %q, %v", attrs, err)
			}
			return
		}
		if err := identity.ValidateAttributes(attrs); err != nil {
			t.Fatalf("decoded attributes fail validation: %v", err)
		}
		enc, err := identity.EncodeAttributes(attrs)
		if err != nil {
			t.Fatalf("EncodeAttributes(DecodeAttributes(x)): %v", err)
		}
		again, err := identity.DecodeAttributes(enc)
		if err != nil || !maps.Equal(again, attrs) {
			t.Fatalf("decode(encode(x)) = %q, %v; want %q", again, err, attrs)
		}
	})
}

func FuzzFromDER(f *testing.F) {
	ca := testca.NewCA(f, "example.org")
	const alice = "spiffe://example.org/client/alice"
	for _, s := range []*testca.SVID{
		ca.CreateSVID(alice),
		ca.CreateSVID("spiffe://example.org/server/files", testca.WithRoles("a", "b"), testca.WithAttributes(map[string]string{"k": "v"}), testca.WithDNSNames("files")),
		ca.CreateSVID(alice, testca.WithRawRoles([]byte{0x30, 0x01})),
		ca.CreateSVID(alice, testca.WithRawAttributes(der(seq(pair("a", "1"), pair("a", "1"))))),
		ca.CreateSVID(alice, testca.WithIsCA()),
		ca.CreateSVID(alice, testca.WithURIs("spiffe://example.org/client/b")),
		ca.CreateSVID(alice, testca.WithUnknownCriticalExtension()),
	} {
		f.Add(s.Leaf.Raw)
	}
	f.Add(ca.Cert.Raw)
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		cert, err := x509.ParseCertificate(data)
		if err != nil {
			return
		}
		id, err := identity.FromCertificate(cert)
		if err != nil {
			if id != nil || !strings.HasPrefix(err.Error(), "identity: ") {
				t.Fatalf("bad error result: %+v, %v", id, err)
			}
			return
		}
		if err := id.ID.Validate(); err != nil {
			t.Fatalf("accepted an invalid ID: %v", err)
		}
		if err := identity.ValidateRoles(id.Roles); err != nil {
			t.Fatalf("accepted invalid roles: %v", err)
		}
		if err := identity.ValidateAttributes(id.Attributes); err != nil {
			t.Fatalf("accepted invalid attributes: %v", err)
		}
		if cert.IsCA || len(cert.URIs) != 1 {
			t.Fatalf("accepted a certificate that is not an SVID")
		}
	})
}
