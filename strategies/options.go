package strategies

import (
	"time"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/strategies/internal/config"
	"go.uber.org/zap"
)

// Option configures what strategies share: where they log, where they record
// metrics and the clock they read. An Option is also a ProduceOption. Only the With
// functions of this package make Options: ApplyShared takes a type internal to
// creek, so that strategies/lookup can read the same options.
type Option interface {
	ProduceOption
	ApplyShared(*config.Shared)
}

// ProduceOption configures Produce: any Option, or one that only Produce takes, such
// as WithFailedDeliveriesSkipped, which no other constructor accepts.
type ProduceOption interface {
	applyProduce(*produceOptions)
}

// options is what every strategy reads; lookup reads it as config.Shared.
type options = config.Shared

type produceOptions struct {
	options
	skipFailed bool
}

type sharedOption func(*options)

func (f sharedOption) ApplyShared(o *options)         { f(o) }
func (f sharedOption) applyProduce(o *produceOptions) { f(&o.options) }

type produceOnly func(*produceOptions)

func (f produceOnly) applyProduce(o *produceOptions) { f(o) }

func buildOptions(opts []Option) options { return config.Resolve(opts) }

func buildProduceOptions(opts []ProduceOption) produceOptions {
	o := produceOptions{options: config.Defaults()}
	for _, opt := range opts {
		opt.applyProduce(&o)
	}
	return o
}

// WithLogger sets the logger. The default discards.
func WithLogger(l *zap.Logger) Option { return sharedOption(func(o *options) { o.Logger = l }) }

// WithMetrics sets the metrics backend. The default discards.
func WithMetrics(m metrics.Metrics) Option {
	return sharedOption(func(o *options) { o.Metrics = m })
}

// WithClock sets the function that tells the time; tests use it to move time.
func WithClock(now func() time.Time) Option {
	return sharedOption(func(o *options) { o.Now = now })
}
