package policy

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

// TestCookbook checks that every example policy file of scripts/policies
// loads on its own, then loads the numbered cookbook files together and
// checks that each recipe decides as its comment says, without evaluation
// errors.
func TestCookbook(t *testing.T) {
	all, _ := filepath.Glob("../../scripts/policies/*.cedar")
	for _, f := range all {
		if _, err := Load([]string{f}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	files, err := filepath.Glob("../../scripts/policies/[0-9][0-9]-*.cedar")
	if err != nil || len(files) < 5 {
		t.Fatalf("cookbook files: %v %v", files, err)
	}
	s, err := Load(files)
	if err != nil {
		t.Fatal(err)
	}
	corp := netip.MustParseAddr("10.0.0.7")
	mon := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC) // Monday 10:00
	reader := principal(t, "spiffe://example.org/client/ann", []string{"reader"}, map[string]string{"team": "payments", "env": "prod"})
	intern := principal(t, "spiffe://example.org/client/ian", []string{"ops", "intern"}, nil)
	support := principal(t, "spiffe://example.org/client/sue", []string{"support"}, nil)
	gw := principal(t, "spiffe://example.org/server/gw", nil, nil)
	bot := principal(t, "spiffe://example.org/client/ci-bot", nil, nil)
	tests := []struct {
		name   string
		p      *Principal
		r      Request
		allow  bool
		policy string
	}{
		{"reader lists", reader, Request{Method: "tools/list"}, true, "readers-list"},
		{"reader searches", reader, Request{Method: "tools/call", Target: "search"}, true, "readers-tools"},
		{"reader cannot deploy", reader, Request{Method: "tools/call", Target: "deploy"}, false, ""},
		{"bot deploys", bot, Request{Method: "tools/call", Target: "deploy"}, true, "ci-bot-deploy"},
		{"payments refund", reader, Request{Method: "tools/call", Target: "refund"}, true, "payments-team-refunds"},
		{"intern with ops cannot refund", intern, Request{Method: "tools/call", Target: "refund"}, false, "interns-no-destructive"},
		{"intern with ops may fetch", intern, Request{Method: "tools/call", Target: "fetch"}, true, "ops-everything"},
		{"prod orders", reader, Request{Method: "resources/read", Target: "db://orders/42"}, true, "prod-orders"},
		{"gateway completes", gw, Request{Method: "completion/complete", TargetType: TypePrompt, Target: "summarize"}, true, "gateways-complete"},
		{"support in hours", support, Request{Method: "tools/call", Target: "lookup_customer"}, true, "support-business-hours"},
		{"support on sunday", support, Request{Method: "tools/call", Target: "lookup_customer", Time: mon.AddDate(0, 0, -1)}, false, ""},
		{"docs", reader, Request{Method: "resources/read", Target: "file:///srv/docs/a.md"}, true, "docs-for-readers"},
		{"team folder", reader, Request{Method: "resources/read", Target: "file:///srv/teams/payments/q1.csv"}, true, "payments-folder"},
		{"no secrets", reader, Request{Method: "resources/read", Target: "file:///srv/docs/secrets/key"}, false, "no-secrets"},
		{"outside network", reader, Request{Method: "tools/call", Target: "search", Source: netip.MustParseAddr("192.0.2.1")}, false, "corp-network-only"},
		{"unknown source", reader, Request{Method: "tools/call", Target: "search", Source: netip.Addr{}}, false, "corp-network-only"},
		{"expiring", reader, Request{Method: "tools/call", Target: "search", Time: t0.Add(23*time.Hour - time.Minute)}, false, "no-expiring-certs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r
			if r.Time.IsZero() {
				r.Time = mon
			}
			if !r.Source.IsValid() && tt.name != "unknown source" {
				r.Source = corp
			}
			d := s.Authorize(tt.p, r)
			if d.Allow != tt.allow || (tt.policy != "" && (len(d.Policies) != 1 || d.Policies[0] != tt.policy)) || len(d.Errors) > 0 {
				t.Errorf("got %v %v errors %v, want %v %q", d, d.Policies, d.Errors, tt.allow, tt.policy)
			}
		})
	}
}
