package ca

import (
	"testing"
	"time"

	"go.step.sm/crypto/jose"

	"github.com/mcpca/mcpca/identity"
)

// MintRawTokenForTest signs a token with the given provisioner and claims,
// skipping the client-side checks of MintToken, so tests can show that the CA
// itself enforces them.
func MintRawTokenForTest(t testing.TB, dir string, password []byte, prov string, c *Claims, extraSANs ...string) string {
	t.Helper()
	s, err := LoadSettings(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := provisionerKey(dir, prov, password)
	if err != nil {
		t.Fatal(err)
	}
	sub := "spiffe://" + s.TrustDomain + "/client/x"
	if c != nil {
		sub = "spiffe://" + s.TrustDomain + "/" + string(c.Kind) + "/" + c.Name
		if _, err := identity.NewID(s.TrustDomain, c.Kind, c.Name); err != nil {
			// Keep the invalid value: the CA must name it.
			sub = "spiffe://" + s.TrustDomain + "/client/x"
		}
	}
	p := &tokenPayload{Subject: sub, Audience: []string{s.CAURL() + "/1.0/sign"}, SANs: append([]string{sub}, extraSANs...), Mcpca: c}
	tok, err := signToken(key, prov, p, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TokenWithUnknownKeyForTest is a well-formed enrolment token for this CA's
// audience signed by a key the CA has never seen, claiming to come from the
// admin provisioner.
func TokenWithUnknownKeyForTest(t testing.TB, dir string) string {
	t.Helper()
	s, err := LoadSettings(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if key.KeyID, err = jose.Thumbprint(key); err != nil {
		t.Fatal(err)
	}
	sub := "spiffe://" + s.TrustDomain + "/client/x"
	p := &tokenPayload{Subject: sub, Audience: []string{s.CAURL() + "/1.0/sign"}, SANs: []string{sub}, Mcpca: &Claims{Kind: "client", Name: "x"}}
	tok, err := signToken(key, AdminProvisioner, p, time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// SignRawTokenForTest signs payload, byte for byte, with the key of a
// provisioner: a token whose JSON a test shapes itself (duplicate or
// case-variant keys, wrong types, missing claims).
func SignRawTokenForTest(t testing.TB, dir string, password []byte, prov, payload string) string {
	t.Helper()
	key, err := provisionerKey(dir, prov, password)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key.Key},
		new(jose.SignerOptions).WithType("JWT").WithHeader("kid", key.KeyID),
	)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
