package policy

import (
	"log/slog"
	"time"

	"github.com/mcpca/mcpca/clock"
)

// config holds the options of Compile, Load and New.
type config struct {
	loc      *time.Location
	toolArgs bool
	clock    clock.Clock
	logger   *slog.Logger
	interval time.Duration
	actions  map[string]bool
}

func newConfig(opts []Option) *config {
	c := &config{loc: time.UTC, clock: clock.Real{}, logger: slog.Default(), interval: 2 * time.Second}
	for _, o := range opts {
		o.apply(c)
	}
	c.actions = make(map[string]bool, len(actions))
	for _, a := range actions {
		c.actions[a] = true
	}
	return c
}

// Option configures Compile, Load and New.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithTimeZone sets the zone of context.hour, context.minute and
// context.weekday. The default is UTC.
func WithTimeZone(loc *time.Location) Option {
	return optionFunc(func(c *config) {
		if loc != nil {
			c.loc = loc
		}
	})
}

// WithToolArguments puts the tool call's arguments into the context as
// context.args. Without it a policy that reads context.args is a load error.
func WithToolArguments() Option {
	return optionFunc(func(c *config) { c.toolArgs = true })
}

// WithClock sets the clock that stamps requests without a Time and drives
// the file watch. The default is the system clock.
func WithClock(c clock.Clock) Option {
	return optionFunc(func(cfg *config) { cfg.clock = clock.Or(c) })
}

// WithLogger sets where reloads and rejected policy files are logged. The
// default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithPollInterval sets how often Watch checks the policy files. The default
// is two seconds.
func WithPollInterval(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.interval = d
		}
	})
}
