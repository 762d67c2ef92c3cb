// Package config carries the options that every strategy takes across to
// strategies/lookup, which cannot see the unexported names of package strategies.
package config

import (
	"time"

	"github.com/creekstream/creek/metrics"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/zap"
)

// Shared is what the options every strategy takes set.
type Shared struct {
	Logger  *zap.Logger
	Metrics metrics.Metrics
	Now     func() time.Time
	// Propagator is read only by the strategies that write messages (Produce).
	Propagator propagation.TextMapPropagator
}

// Defaults returns the configuration of a strategy given no options: it logs and
// records nothing and reads the wall clock.
func Defaults() Shared {
	return Shared{Logger: zap.NewNop(), Metrics: metrics.Noop{}, Now: time.Now}
}

// Resolve applies opts, which are strategies.Options, over Defaults.
func Resolve[O interface{ ApplyShared(*Shared) }](opts []O) Shared {
	s := Defaults()
	for _, o := range opts {
		o.ApplyShared(&s)
	}
	return s
}
