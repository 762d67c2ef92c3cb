// Package config carries the options that every strategy takes across to
// strategies/lookup, which cannot see the unexported names of package strategies.
package config

import (
	"time"

	"github.com/creekstream/creek/metrics"
	"go.uber.org/zap"
)

// Shared is what the options every strategy takes set.
type Shared struct {
	Logger  *zap.Logger
	Metrics metrics.Metrics
	Now     func() time.Time
}

// Defaults returns the configuration of a strategy given no options: it logs and
// records nothing and reads the wall clock.
func Defaults() Shared {
	return Shared{Logger: zap.NewNop(), Metrics: metrics.Noop{}, Now: time.Now}
}

// resolve is the func([]strategies.Option) Shared that package strategies registers.
var resolve any

// Register is called by package strategies with the function that applies its
// options over Defaults.
func Register[O any](f func([]O) Shared) { resolve = f }

// Resolve applies opts, which are strategies.Options, over Defaults.
func Resolve[O any](opts []O) Shared { return resolve.(func([]O) Shared)(opts) }
