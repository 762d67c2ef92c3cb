package strategies

import (
	"context"

	"github.com/creekstream/creek/internal/inflight"
	"github.com/creekstream/creek/processor"
)

// RunTask maps each payload through a function and hands the result to the next step.
//
// When the next step rejects a result, RunTask keeps it and offers it again from Poll,
// so the function runs exactly once per message; Submit rejects while a result is held.
type RunTask[T, U any] struct {
	fn   func(context.Context, processor.Message[T]) (U, error)
	next processor.Strategy[U]
	o    options
	held inflight.Slot[U]
}

// NewRunTask returns a RunTask that maps messages through fn, which gets the
// message's context. An error from fn is returned from Submit and the message is not
// forwarded; fn reports a message that can never be processed with processor.Invalid.
// A message whose context was cancelled when fn failed is dropped instead (see
// abandoned).
func NewRunTask[T, U any](fn func(context.Context, processor.Message[T]) (U, error), next processor.Strategy[U], opts ...Option) *RunTask[T, U] {
	return &RunTask[T, U]{fn: fn, next: next, o: buildOptions(opts)}
}

// Submit runs fn on msg and forwards the result. Filtered messages pass through.
func (s *RunTask[T, U]) Submit(msg processor.Message[T]) error {
	if s.held.Full() {
		return processor.ErrMessageRejected
	}
	if msg.Filtered() {
		// Nothing was computed, so a rejection can go straight back to the caller.
		return s.next.Submit(processor.AsFiltered[U](msg))
	}
	v, err := s.fn(msg.Context(), msg)
	if err != nil {
		if abandoned(msg) {
			return nil
		}
		return err
	}
	out := processor.WithPayload(msg, v)
	if err := s.next.Submit(out); err != nil {
		return s.held.Keep(out, err)
	}
	return nil
}

// Poll polls the next step and offers it the held result again.
func (s *RunTask[T, U]) Poll() error {
	if err := s.next.Poll(); err != nil {
		return err
	}
	return ignoreRejected(s.held.Retry(s.next))
}

// Close does nothing: RunTask holds at most one result, which Join flushes.
func (s *RunTask[T, U]) Close() {}

// Join offers the held result until the next step takes it or ctx is done, then
// closes and joins the next step.
func (s *RunTask[T, U]) Join(ctx context.Context) error {
	return joinHeld(ctx, &s.held, s.next, nil, func() {
		s.o.Metrics.Increment("strategies.run_task.join.backpressure", 1)
	})
}

// Terminate drops the held result and terminates the next step.
func (s *RunTask[T, U]) Terminate() {
	s.held.Clear()
	s.next.Terminate()
}

// abandoned reports whether a message that a user function failed on is to be
// dropped rather than fail the chain: its context is cancelled, which the processor
// does only once the message's result can no longer be committed (its partition was
// released, or its chain was joined or terminated). The message is redelivered from
// the last commit.
func abandoned[T any](msg processor.Message[T]) bool {
	return msg.Context().Err() != nil
}
