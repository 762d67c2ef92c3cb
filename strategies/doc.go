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
package strategies
