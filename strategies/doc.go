// Package strategies holds the processing steps that creek's StreamProcessor
// chains together: map (RunTask), concurrent map (RunTaskConcurrently), Filter,
// Reduce, Batch and Unbatch, Unfold, Produce, CommitOffsets, Healthcheck, Guard,
// SetJoinTimeout and Noop.
//
// Every strategy implements processor.Strategy. Each passes filtered messages
// through untouched and carries committables forward so that an offset is committed
// only once everything before it has been processed. Backpressure travels upstream:
// a step whose next step rejects keeps its result and retries it from Poll, and
// rejects new messages until it has passed its backlog on.
//
// # Constructors
//
// A constructor returns an error exactly when it validates a value that can be
// wrong at run time, one that typically comes from configuration: a size, a count, a
// limit, a duration, a topic, a commit policy (NewRunTaskConcurrently,
// NewRunTaskInBatches, NewReduce, NewBatch, NewFilterWithCommitPolicy, NewProduce,
// NewLiveness). Such a constructor reports every argument it rejects through that
// error, a nil one included. A constructor that takes only functions, other steps
// and values that are all valid cannot fail and returns no error (NewRunTask,
// NewFilter, NewUnbatch, NewUnfold, NewCommitOffsets, NewHealthcheck, NewGuard,
// NewSetJoinTimeout, NewNoop, and lookup.New).
//
// # Options
//
// Constructors take Options (WithLogger, WithMetrics, WithClock), the same for
// every strategy, so one list can be given to a whole chain; pass-through steps
// (Healthcheck, Guard, SetJoinTimeout, Noop) have nothing to configure and take
// none. NewProduce takes ProduceOptions: any Option, and WithFailedDeliveriesSkipped,
// which only Produce has and no other constructor compiles with.
//
// Errors start with "strategies: ", as the standard library's start with their
// package's name.
package strategies
