package pipeline

import (
	"errors"
	"sync/atomic"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// Factory builds the chain of a pipeline for a processor: it is what Commit returns
// and processor.New takes. processor.New validates it and hands it the processor's
// logger and metrics; both happen once, before any chain is built.
type Factory[S any] struct {
	build func(commit processor.CommitFunc, inherited []strategies.Option) (processor.Strategy[S], error)
	steps []step
	// inherited holds the options made of the instruments of the first Instrument
	// call; Create reads it on the processor's loop.
	inherited atomic.Pointer[[]strategies.Option]
}

var (
	_ processor.Factory[processor.KafkaPayload] = (*Factory[processor.KafkaPayload])(nil)
	_ processor.Validator                       = (*Factory[processor.KafkaPayload])(nil)
	_ processor.Instrumented                    = (*Factory[processor.KafkaPayload])(nil)
)

// errNoSource is what a pipeline that does not start with From reports.
var errNoSource = errors.New("pipeline: the stage does not start with From or FromKafka")

// Commit ends the pipeline: every message's offsets are handed to the processor to
// commit (strategies.CommitOffsets), which happens once everything before them has
// been processed. It returns the Factory to give processor.New.
func Commit[S, T any](st Stage[S, T], opts ...strategies.Option) *Factory[S] {
	f := &Factory[S]{steps: st.steps}
	if build := st.build; build != nil {
		f.build = func(commit processor.CommitFunc, inherited []strategies.Option) (processor.Strategy[S], error) {
			return build(strategies.NewCommitOffsets[T](commit, with(inherited, opts)...), inherited)
		}
	}
	return f
}

// Validate checks the configuration of every step, such as a concurrency, a batch
// limit, a topic or a function that is missing, by building each step once. The error
// names each step that is wrong by its position and operator. processor.New calls it.
func (f *Factory[S]) Validate() error {
	if f.build == nil {
		return errNoSource
	}
	var errs []error
	for _, s := range f.steps {
		if err := s.check(); err != nil {
			errs = append(errs, s.wrap(err))
		}
	}
	return errors.Join(errs...)
}

// Instrument gives every step the processor's logger, metrics and propagator (which
// Produce steps write trace context with), unless the step was
// given its own, and hands them to the producers of Produce steps that are
// processor.Instrumented. processor.New calls it; when a Factory serves several
// processors, the first one's instruments are used.
func (f *Factory[S]) Instrument(inst processor.Instruments) {
	var opts []strategies.Option
	if inst.Logger != nil {
		opts = append(opts, strategies.WithLogger(inst.Logger))
	}
	if inst.Metrics != nil {
		opts = append(opts, strategies.WithMetrics(inst.Metrics))
	}
	if inst.Propagator != nil {
		opts = append(opts, strategies.WithPropagator(inst.Propagator))
	}
	if !f.inherited.CompareAndSwap(nil, &opts) {
		return
	}
	for _, s := range f.steps {
		if p, ok := s.producer.(processor.Instrumented); ok {
			p.Instrument(inst)
		}
	}
}

// Create builds the pipeline's chain, back to front, for the processor's assigned
// partitions.
func (f *Factory[S]) Create(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[S], error) {
	if f.build == nil {
		return nil, errNoSource
	}
	var inherited []strategies.Option
	if p := f.inherited.Load(); p != nil {
		inherited = *p
	}
	return f.build(commit, inherited)
}
