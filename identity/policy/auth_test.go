package policy

import (
	"testing"
)

// TestAuthMethods: scripts/policies/auth-methods.cedar treats the ways a
// caller authenticated differently, for one principal with the same roles.
func TestAuthMethods(t *testing.T) {
	s, err := Load([]string{"../../scripts/policies/auth-methods.cedar"})
	if err != nil {
		t.Fatal(err)
	}
	id := ident(t, "spiffe://acme.test/client/alice", []string{"reader", "admin"}, nil)
	for _, tc := range []struct {
		how    AuthMethod
		tool   string
		allow  bool
		policy string
	}{
		{AuthMTLS, "delete_record", true, "auth-admins-delete-with-a-key"},
		{AuthBoundToken, "delete_record", true, "auth-admins-delete-with-a-key"},
		{AuthToken, "delete_record", false, ""},
		{AuthAPIKey, "delete_record", false, "auth-no-api-key-writes"},
		{AuthToken, "whoami", true, "auth-readers-read-only"},
		{AuthAPIKey, "search_docs", true, "auth-readers-read-only"},
	} {
		p := NewPrincipalFor(id, tc.how)
		if p.Auth() != tc.how {
			t.Fatalf("Auth() = %q", p.Auth())
		}
		d := s.Authorize(p, Request{Method: "tools/call", Target: tc.tool})
		if d.Allow != tc.allow || (tc.policy != "" && (len(d.Policies) != 1 || d.Policies[0] != tc.policy)) || len(d.Errors) > 0 {
			t.Errorf("%s %s: got %v %v %v, want %v %s", tc.how, tc.tool, d, d.Policies, d.Errors, tc.allow, tc.policy)
		}
		// The reference (plain cedar-go) decides alike.
		if ref := s.reference(p, Request{Method: "tools/call", Target: tc.tool}); ref.Allow != d.Allow {
			t.Errorf("%s %s: the index says %v, cedar-go %v", tc.how, tc.tool, d, ref)
		}
	}
	if NewPrincipal(id).Auth() != AuthMTLS {
		t.Error("NewPrincipal is not mtls")
	}
}
