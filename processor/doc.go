// Package processor defines creek's message model and the contract between the
// StreamProcessor and the processing strategies it drives.
//
// A StreamProcessor polls a Consumer and submits every message to a chain of
// Strategy values built by a Factory for the current partition assignment. Each
// message carries a Committable: the offsets that may be committed once the
// message, and everything before it, has been fully processed. Strategies pass
// messages down the chain; the last one (usually strategies.CommitOffsets) hands
// committables to the CommitFunc, and the processor commits them according to a
// CommitPolicy. Offsets are therefore committed at least once and never past work
// that has not finished.
//
// Backpressure is expressed by returning ErrMessageRejected from Submit: the
// caller keeps the message and offers it again later. A message that cannot be
// processed at all is reported as an *InvalidMessageError and, when a dead-letter
// queue is configured, sent there while the consumer carries on.
//
// Every message carries a context (Message.Context) that user functions receive.
// It holds the values of the context given to Run and lasts as long as the message's
// result can still be committed: the processor cancels a partition's context when it
// releases the partition at a revocation, and a chain's when the chain has been
// joined or its join has run out of JoinTimeout, at a rebalance or at shutdown, or
// when it is terminated. Work in flight at a shutdown or a revocation therefore may
// finish, within JoinTimeout, and be committed; what is still running after that is
// cancelled and redelivered. A strategy drops a message its function failed on once
// the message's context is cancelled, rather than failing the chain.
//
// Package processortest has test doubles (a fake Consumer, a scriptable Strategy and
// Factory, a run harness) for testing strategies and factories on a real
// StreamProcessor.
package processor
