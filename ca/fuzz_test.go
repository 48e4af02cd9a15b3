package ca

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/mcpca/mcpca/identity"
)

// FuzzTokenClaims: whatever a token payload holds, reading it and validating
// its claims never panics, and accepted claims are within the contract.
func FuzzTokenClaims(f *testing.F) {
	s := &Settings{TrustDomain: "acme.test", OIDArc: "1.3.6.1.4.1.99999.1", Address: "127.0.0.1:1", DefaultTTL: Duration{time.Hour}, MaxTTL: Duration{24 * time.Hour}}
	f.Add(`{"sub":"spiffe://acme.test/client/a","sans":["spiffe://acme.test/client/a"],"mcpca":{"kind":"client","name":"a","roles":["r"],"attrs":{"k":"v"},"ttl":"1h"}}`)
	f.Add(`{"sub":"spiffe://acme.test/server/s","sans":["spiffe://acme.test/server/s","s.acme.test","::1"],"mcpca":{"kind":"server","name":"s"}}`)
	f.Add(`{"mcpca":{"kind":"client","name":"a","ttl":"-1h"}}`)
	f.Add(`{"mcpca":null}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, payload string) {
		tok := "e30." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
		p, err := readTokenPayload(tok)
		if err != nil {
			return
		}
		id, ttl, err := validateClaims(s, p.Subject, p.SANs, p.Mcpca)
		if err != nil {
			return
		}
		if id.String() != p.Subject || ttl < MinTTL || ttl > 24*time.Hour {
			t.Fatalf("accepted %q: id %s ttl %s", payload, id, ttl)
		}
		if _, err := leafModifier(s.mustOIDs(), id, p.Mcpca); err != nil {
			t.Fatalf("accepted claims do not encode: %v", err)
		}
	})
}

func (s *Settings) mustOIDs() (o identity.OIDs) {
	o, _ = s.OIDs()
	return o
}
