package oauth

import (
	"testing"

	"github.com/mcpca/mcpca/internal/strictjson"
)

// FuzzIntrospectionAnswer: an introspection answer as the endpoint sends
// it (checked as postIntrospection checks it) never panics; what is
// mapped says active true, is one strict JSON object, and has a sub
// whenever the answer had a sub or a client_id.
func FuzzIntrospectionAnswer(f *testing.F) {
	for _, s := range []string{`{"active":true,"client_id":"bot","aud":"x","exp":1}`, `{"active":false}`,
		`{"active":true,"sub":"alice","active":false}`, `{"ACTIVE":true,"sub":"a"}`, `{"active":"true"}`,
		`{"active":true,"client_id":"a","sub":"b"}`, `{"active":true}`, `[true]`, ` {"active" : true , "client_id" : 1 } `} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, answer string) {
		body := []byte(answer)
		if strictjson.Check(body) != nil {
			return
		}
		claims, active, err := introspectionClaims(body)
		if !active || err != nil {
			return
		}
		if v, ok := strictjson.Lookup(claims, "active"); !ok || string(v) != "true" {
			t.Fatalf("mapped %q, which does not say active true", claims)
		}
		if err := strictjson.Check(claims); err != nil {
			t.Fatalf("mapped %q: %v", claims, err)
		}
		_, hadSub := strictjson.Lookup(body, "sub")
		_, hadClient := strictjson.Lookup(body, "client_id")
		if _, ok := strictjson.Lookup(claims, "sub"); (hadSub || hadClient) && !ok {
			t.Fatalf("mapped %q has no sub", claims)
		}
		_, _, _ = mapClaims(claims, Issuer{URL: "https://as.test"}, nil)
	})
}
