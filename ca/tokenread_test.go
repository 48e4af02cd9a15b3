package ca

import "testing"

func TestAudienceIs(t *testing.T) {
	for _, tc := range []struct {
		aud, address string
		want         bool
	}{
		{"https://ca.example:9443/1.0/sign", "ca.example:9443", true},
		{"https://ca.example:9443/sign", "ca.example:9443", true},
		{"https://CA.example:9443/1.0/sign", "ca.example:9443", true},
		{"https://ca.example/1.0/sign", "ca.example:443", true},
		{"https://ca.example:443/1.0/sign", "ca.example", true},
		{"https://[::1]:9443/1.0/sign", "[::1]:9443", true},
		{"https://ca.example:1/1.0/sign", "ca.example:9443", false},
		{"https://ca.example/1.0/sign", "ca.example:9443", false},
		{"http://ca.example:9443/1.0/sign", "ca.example:9443", false},
		{"https://ca.example:9443/1.0/revoke", "ca.example:9443", false},
		{"https://ca.example:9443/1.0/sign?x=1", "ca.example:9443", false},
		{"https://ca.example:9443/1.0/sign#f", "ca.example:9443", false},
		{"https://u@ca.example:9443/1.0/sign", "ca.example:9443", false},
		{"https://other.example:9443/1.0/sign", "ca.example:9443", false},
		{"https://ca.example:9443/1.0/sign/", "ca.example:9443", false},
		{"https://ca.example:9443/x/../1.0/sign", "ca.example:9443", false},
		{"", "ca.example:9443", false},
	} {
		if got := audienceIs(tc.aud, tc.address, "sign"); got != tc.want {
			t.Errorf("audienceIs(%q, %q) = %v", tc.aud, tc.address, got)
		}
	}
}
