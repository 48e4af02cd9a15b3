package mcpauth

import (
	"container/list"
	"fmt"
	"testing"
	"time"

	"github.com/mcpca/mcpca/clock"
)

// The binding table never holds more than its limit: expired bindings go
// first, then the least recently used.
func TestSessionTableBounded(t *testing.T) {
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g := &Guard{cfg: config{clock: fc, sessionTTL: time.Minute, maxSess: 3, maxSessPerID: 1000}, sessions: make(map[string]*list.Element), perID: map[string]int{}}
	const alice, bob = "spiffe://acme.test/client/alice", "spiffe://acme.test/client/bob"
	g.bindSession("s1", alice)
	g.bindSession("s2", alice)
	g.bindSession("s3", bob)
	fc.Advance(time.Second)
	if st := g.checkSession("s1", alice); st != sessionOwned {
		t.Fatalf("s1 for alice: %v", st)
	}
	g.bindSession("s4", bob) // full, nothing expired: s2, least recently used, goes
	for sid, want := range map[string]sessionState{"s1": sessionOwned, "s2": sessionUnbound, "s3": sessionForeign, "s4": sessionForeign} {
		if st := g.checkSession(sid, alice); st != want {
			t.Errorf("%s for alice: %v, want %v", sid, st, want)
		}
	}
	// A flood of new sessions leaves the table at its limit.
	for i := range 1000 {
		g.bindSession(fmt.Sprint("flood", i), bob)
	}
	if n := g.sessionCount(); n != 3 {
		t.Fatalf("after the flood: %d bindings, want 3", n)
	}
	// Bindings unused for longer than the TTL are swept at the next bind.
	fc.Advance(2 * time.Minute)
	g.bindSession("s5", alice)
	if n := g.sessionCount(); n != 1 || g.checkSession("s5", alice) != sessionOwned {
		t.Fatalf("after the TTL: %d bindings, want s5 only", n)
	}
	g.dropSession("s5")
	if n := g.sessionCount(); n != 0 {
		t.Fatalf("after dropping s5: %d bindings", n)
	}
}

// One identity at its own limit makes way with its own bindings: a flood
// of sessions by one identity leaves everyone else's alone.
func TestSessionTableFairPerIdentity(t *testing.T) {
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g := &Guard{cfg: config{clock: fc, sessionTTL: time.Hour, maxSess: 100, maxSessPerID: 2}, sessions: make(map[string]*list.Element), perID: map[string]int{}}
	const alice, bob = "spiffe://acme.test/client/alice", "spiffe://acme.test/client/bob"
	g.bindSession("a1", alice)
	g.bindSession("b1", bob)
	g.bindSession("a2", alice)
	for i := range 1000 {
		g.bindSession(fmt.Sprint("flood", i), bob)
	}
	for sid, want := range map[string]sessionState{"a1": sessionOwned, "a2": sessionOwned, "b1": sessionUnbound} {
		if st := g.checkSession(sid, alice); st != want {
			t.Errorf("%s for alice: %v, want %v", sid, st, want)
		}
	}
	if n := g.sessionCount(); n != 4 || g.perID[bob] != 2 {
		t.Fatalf("%d bindings, bob holds %d; want 4 and 2", n, g.perID[bob])
	}
	g.checkSession("a2", alice)
	g.bindSession("a3", alice) // alice at her limit: her least recently used (a1) goes
	if st := g.checkSession("a1", alice); st != sessionUnbound {
		t.Errorf("a1 after a3: %v", st)
	}
}
