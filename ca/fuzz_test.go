package ca

import (
	"encoding/base64"
	"reflect"
	"strings"
	"testing"
	"time"

	josejson "github.com/go-jose/go-jose/v3/json"

	"github.com/mcpca/mcpca/identity"
)

// FuzzTokenClaims: whatever a token payload holds, reading it and validating
// its claims never panics, and accepted claims are within the contract.
func FuzzTokenClaims(f *testing.F) {
	s := &Settings{TrustDomain: "acme.test", OIDArc: "1.3.6.1.4.1.99999.1", Address: "127.0.0.1:1", DefaultTTL: Duration{time.Hour}, MaxTTL: Duration{24 * time.Hour}}
	st := &serverState{settings: s}
	now := time.Unix(1_800_000_000, 0)
	f.Add(`{"iss":"admin","aud":"https://127.0.0.1:1/1.0/sign","exp":1800000060,"nbf":1800000000,"sub":"spiffe://acme.test/client/a","sans":["spiffe://acme.test/client/a"],"mcpca":{"kind":"client","name":"a","roles":["r"],"attrs":{"k":"v"},"ttl":"1h"}}`)
	f.Add(`{"aud":["https://127.0.0.1:1/sign"],"exp":1800000060,"sub":"spiffe://acme.test/server/s","sans":["spiffe://acme.test/server/s","s.acme.test","::1"],"mcpca":{"kind":"server","name":"s"}}`)
	f.Add(`{"aud":"https://127.0.0.1:1/1.0/sign","exp":1800000060,"ISS":"admin","sub":"spiffe://acme.test/client/a","SANS":["spiffe://acme.test/client/a"],"mcpca":{"kind":"client","name":"a"}}`)
	f.Add(`{"mcpca":{"kind":"client","name":"a","ttl":"-1h"}}`)
	f.Add(`{"mcpca":null}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, payload string) {
		tok := "e30." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
		p, _, err := readToken(st, tok, "sign", now)
		if err != nil {
			return
		}
		// What mcpca read is what go-jose (step-ca's reader) reads.
		var q tokenPayload
		b, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		if err := josejson.Unmarshal(b, &q); err != nil || !reflect.DeepEqual(*p, q) {
			t.Fatalf("%q: mcpca read %+v, go-jose %+v (%v)", payload, *p, q, err)
		}
		if p.Expiry == nil || time.Unix(*p.Expiry, 0).Sub(now) > s.TokenTTLLimit()+tokenSkew {
			t.Fatalf("accepted %q without a bounded exp", payload)
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
