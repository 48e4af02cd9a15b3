package policy

import (
	"context"
	"crypto/sha256"
	"os"
	"sync"
	"sync/atomic"
)

// Live is a policy Set loaded from files that can be reloaded while in
// use: Reload (wire it to SIGHUP) and Watch (polls the files) swap in a new
// Set only when every file compiles, and otherwise keep the last good one and
// log why. It is safe for concurrent use.
type Live struct {
	cfg   *config
	paths []string
	cur   atomic.Pointer[Set]
	gen   atomic.Uint64

	mu      sync.Mutex // serializes reloads
	seen    [sha256.Size]byte
	readErr string // the last read error Watch logged
}

// New loads the policy files into a Live policy. A path that is a directory
// stands for the *.cedar files in it, listed again at every reload, so files
// added later are picked up. Any problem in any file is an error: at start
// there is no last good set to fall back on.
func New(paths []string, opts ...Option) (*Live, error) {
	a := &Live{cfg: newConfig(opts), paths: append([]string(nil), paths...)}
	srcs, sum, err := a.read()
	if err != nil {
		return nil, err
	}
	s, err := compile(srcs, a.cfg)
	if err != nil {
		return nil, err
	}
	a.seen = sum
	a.cur.Store(s)
	a.gen.Store(1)
	return a, nil
}

// Set returns the policy set in force.
func (a *Live) Set() *Set { return a.cur.Load() }

// Generation counts the policy sets loaded so far: 1 after New, plus one for
// each successful reload.
func (a *Live) Generation() uint64 { return a.gen.Load() }

// Authorize decides r with the policy set in force; see Set.Authorize.
func (a *Live) Authorize(p *Principal, r Request) Decision { return a.cur.Load().Authorize(p, r) }

// Filter filters targets with the policy set in force; see Set.Filter.
func (a *Live) Filter(p *Principal, base Request, targets []string) []string {
	return a.cur.Load().Filter(p, base, targets)
}

// FilterTools returns the tool names p may call; see Set.FilterTools.
func (a *Live) FilterTools(p *Principal, names []string) []string {
	return a.cur.Load().FilterTools(p, names)
}

// FilterResources returns the resource URIs p may read; see Set.FilterResources.
func (a *Live) FilterResources(p *Principal, uris []string) []string {
	return a.cur.Load().FilterResources(p, uris)
}

// FilterPrompts returns the prompt names p may get; see Set.FilterPrompts.
func (a *Live) FilterPrompts(p *Principal, names []string) []string {
	return a.cur.Load().FilterPrompts(p, names)
}

// ReloadOn calls Reload for every value received from c until ctx is done
// or c is closed. Wire it to SIGHUP:
//
//	c := make(chan os.Signal, 1)
//	signal.Notify(c, syscall.SIGHUP)
//	go authz.ReloadOn(ctx, c)
func (a *Live) ReloadOn(ctx context.Context, c <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-c:
			if !ok {
				return
			}
			_ = a.Reload() // logged by Reload
		}
	}
}

// Reload reads and compiles the files again. On success the new set takes
// effect for the next request; on failure the current set stays in force,
// the error is logged and returned.
func (a *Live) Reload() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	srcs, sum, err := a.read()
	if err != nil {
		a.cfg.logger.Error("policy reload failed, keeping the last good policy set", "files", a.paths, "error", err)
		return err
	}
	return a.install(srcs, sum)
}

// install compiles srcs and swaps them in; a.mu is held.
func (a *Live) install(srcs []File, sum [sha256.Size]byte) error {
	a.seen = sum
	s, err := compile(srcs, a.cfg)
	if err != nil {
		a.cfg.logger.Error("policy reload failed, keeping the last good policy set", "files", a.paths, "error", err)
		return err
	}
	a.cur.Store(s)
	gen := a.gen.Add(1)
	a.cfg.logger.Info("policy reloaded", "files", a.paths, "policies", s.Len(), "generation", gen)
	return nil
}

// Watch polls the files on the interval of WithPollInterval (on the clock of
// WithClock) and reloads when their content changes, until ctx is done. Each
// poll reads and hashes the files (names, sizes and bytes), so an edit is seen
// even when it keeps the size and modification time. A
// broken edit is logged once and the last good set stays in force until the
// files change again. Watch returns ctx.Err().
func (a *Live) Watch(ctx context.Context) error {
	t := a.cfg.clock.NewTimer(a.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C():
		}
		a.poll()
		t.Reset(a.cfg.interval)
	}
}

// poll reloads if the files' content differs from what was last seen.
func (a *Live) poll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	srcs, sum, err := a.read()
	if err != nil {
		if err.Error() != a.readErr { // log each distinct failure once
			a.readErr = err.Error()
			a.cfg.logger.Warn("policy watch: cannot read policy files, keeping the last good policy set", "error", err)
		}
		return
	}
	a.readErr = ""
	if sum == a.seen {
		return
	}
	_ = a.install(srcs, sum)
}

// read reads the policy files.
func (a *Live) read() ([]File, [sha256.Size]byte, error) { return readSources(a.paths) }
