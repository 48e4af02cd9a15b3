package daemon

import (
	"strings"
	"testing"
)

// FuzzParseConfig: any bytes either parse into a valid configuration or fail
// with an "agent: " error; never a panic.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("identities:\n  - name: web\n    ca_url: https://ca:9000\n    root: r\n    cert: c\n    key: k\n    hooks:\n      - exec: [a]\n        timeout: 1s\n"))
	f.Add([]byte("health_addr: '[::1]:0'\nidentities: []\n"))
	f.Add([]byte("identities: {a: 1}\n"))
	f.Add([]byte("&a [*a, *a]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "agent: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if len(c.Identities) == 0 {
			t.Fatal("a config without identities parsed")
		}
		for _, id := range c.Identities {
			if !(id.RenewAt > 0 && id.RenewAt < 1) || id.Name == "" || id.Cert == "" || id.Key == "" {
				t.Fatalf("invalid identity accepted: %+v", id)
			}
		}
	})
}
