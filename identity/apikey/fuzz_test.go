package apikey_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpca/mcpca/identity/apikey"
)

// FuzzCheck: the key parser never panics, and what it accepts is a key
// Generate could have made (the prefix, canonical base64url, its checksum),
// one string per secret.
func FuzzCheck(f *testing.F) {
	k, _, _ := apikey.Generate()
	f.Add(k)
	f.Add(k[:57] + "A")
	f.Add("mcpca_ak_")
	f.Add("")
	f.Add("ghp_0123456789abcdefghijklmnopqrstuvwxyzABCD")
	f.Fuzz(func(t *testing.T, s string) {
		if apikey.Check(s) != nil {
			return
		}
		if len(s) != apikey.KeyLength || s[:len(apikey.Prefix)] != apikey.Prefix {
			t.Fatalf("accepted %q", s)
		}
	})
}

// FuzzParseSet: the signed set parser never panics, never accepts a set
// its key did not sign, and every entry of a set it accepts passes Check.
func FuzzParseSet(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	jwks := &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256"}}}
	_, e := newKey(f, "ci-bot", time.Unix(1_900_000_000, 0))
	set := &apikey.Set{Issuer: "https://ca.test", IssuedAt: 1_800_000_000, NextUpdate: 1_800_000_060, Keys: []apikey.Entry{e}}
	good, err := apikey.SignSet(set, key, "k1")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add("a.b.c")
	f.Add(`{"payload":"e30","signatures":[]}`)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := apikey.ParseSet(s, jwks, "https://ca.test")
		if err != nil {
			return
		}
		if got.Issuer != "https://ca.test" || got.NextUpdate <= got.IssuedAt {
			t.Fatalf("accepted %+v", got)
		}
		for i := range got.Keys {
			if err := got.Keys[i].Check(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
