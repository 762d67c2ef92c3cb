package strategies

import (
	"time"

	"github.com/creekstream/creek/metrics"
	"go.uber.org/zap"
)

// Option configures what strategies share: where they log, where they record
// metrics, and the clock they read.
type Option func(*options)

type options struct {
	logger  *zap.Logger
	metrics metrics.Metrics
	now     func() time.Time

	// countDeliveryErrors is Produce's: see WithDeliveryErrorsCounted.
	countDeliveryErrors bool
}

func buildOptions(opts []Option) options {
	o := options{logger: zap.NewNop(), metrics: metrics.Noop{}, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithLogger sets the logger. The default discards.
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.logger = l } }

// WithMetrics sets the metrics backend. The default discards.
func WithMetrics(m metrics.Metrics) Option { return func(o *options) { o.metrics = m } }

// WithClock sets the function that tells the time; tests use it to move time.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Resolve returns the logger, metrics backend and clock that opts set, with the
// defaults for those they leave out. Strategies outside this package use it to take
// the same options.
func Resolve(opts ...Option) (*zap.Logger, metrics.Metrics, func() time.Time) {
	o := buildOptions(opts)
	return o.logger, o.metrics, o.now
}
