package processor

import "context"

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
