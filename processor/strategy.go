package processor

import (
	"context"

	"github.com/creekstream/creek/metrics"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/zap"
)

// Strategy is one step of a processing chain. Payloads of type T come in through
// Submit; a strategy usually hands its results to the next step.
//
// All methods are called from the processor's loop goroutine, one at a time.
type Strategy[T any] interface {
	// Submit hands a message over. It returns ErrMessageRejected when the strategy
	// cannot take the message now (backpressure); the caller keeps the message and
	// offers it again later, and the strategy must not have half-processed it. It may
	// return an *InvalidMessageError; any other error stops the processor.
	Submit(msg Message[T]) error
	// Poll moves asynchronous work along and surfaces its errors. It must not block.
	Poll() error
	// Close says that no more messages will be submitted. It does not block.
	Close()
	// Join blocks until everything submitted has been processed or ctx is done,
	// then closes and joins the next step. Work still unfinished when ctx is done is
	// abandoned: nothing past it is committed, so it is redelivered. Running out of
	// time is not an error; Join returns an error only for failed work.
	Join(ctx context.Context) error
	// Terminate stops at once, abandoning work; nothing more is committed.
	Terminate()
}

// RunSubmitter is implemented by strategies that can take several messages in one
// call. The processor hands a partition's run of messages to a chain whose first
// step implements it that way, which saves a call and a copy of every message at
// each step that passes the run on.
type RunSubmitter[T any] interface {
	// SubmitRun submits msgs in order, as that many Submit calls would, until one
	// fails, and returns how many it took and that error. With ErrMessageRejected,
	// msgs[n:] are left to the caller, to offer again later; an
	// *InvalidMessageError counts its message as taken, and the caller goes on
	// with msgs[n:]; any other error stops the processor. It must not keep msgs,
	// whose array the caller reuses, only copies of its messages. It may replace
	// the payloads of the messages it took, msgs[:n], as a step that maps
	// payloads to the same type does to save copying them; the caller reads only
	// their offsets afterwards.
	SubmitRun(msgs []Message[T]) (n int, err error)
}

// CommitFunc stages offsets for commit. With force the offsets are committed before
// the function returns; without it the processor's CommitPolicy decides when.
type CommitFunc func(offsets Committable, force bool) error

// Factory builds a strategy chain for a set of assigned partitions.
type Factory[T any] interface {
	// Create returns a new chain for partitions. The chain's last step hands its
	// committables to commit.
	Create(commit CommitFunc, partitions []Partition) (Strategy[T], error)
}

// FactoryFunc adapts a function to Factory.
type FactoryFunc[T any] func(commit CommitFunc, partitions []Partition) (Strategy[T], error)

// Create calls f.
func (f FactoryFunc[T]) Create(commit CommitFunc, partitions []Partition) (Strategy[T], error) {
	return f(commit, partitions)
}

// Shutdowner is implemented by factories that hold resources for the life of the
// processor. Shutdown runs once when the processor ends, also after a failure.
type Shutdowner interface {
	Shutdown()
}

// AssignmentWatcher is implemented by factories whose strategies need to know the
// assignment. Under a cooperative rebalance the processor keeps the running chain
// and calls PartitionsChanged with the full new assignment instead of rebuilding it.
type AssignmentWatcher interface {
	PartitionsChanged(partitions []Partition)
}

// Validator is implemented by factories that can check their configuration before
// they build a chain, such as a pipeline's. New calls Validate once and fails with
// its error, so that a mistake is reported when the processor is created rather
// than at every rebalance.
type Validator interface {
	Validate() error
}

// Instruments are what a processor reports through, as given in its Config. A nil
// field means the Config left it unset.
type Instruments struct {
	Logger  *zap.Logger
	Metrics metrics.Metrics
	// Propagator is Config.Propagator: what writes messages injects their trace
	// context with it.
	Propagator propagation.TextMapPropagator
}

// Or returns i with each unset field taken from fallback: a part's own
// configuration first, the processor's where it says nothing.
func (i Instruments) Or(fallback Instruments) Instruments {
	if i.Logger == nil {
		i.Logger = fallback.Logger
	}
	if i.Metrics == nil {
		i.Metrics = fallback.Metrics
	}
	if i.Propagator == nil {
		i.Propagator = fallback.Propagator
	}
	return i
}

// Instrumented is implemented by the parts a processor runs with (its Consumer, its
// Factory, the DLQ producer) that can report through the processor's Instruments,
// so that logging and metrics are configured once. New calls Instrument once, before
// Run; a part uses the processor's instruments only where its own configuration left
// them unset.
type Instrumented interface {
	Instrument(Instruments)
}
