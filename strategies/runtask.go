package strategies

import (
	"context"
	"errors"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies/internal/held"
)

// RunTask maps each payload through a function and hands the result to the next step.
//
// When the next step rejects a result, RunTask keeps it and offers it again from Poll,
// so the function runs exactly once per message; Submit rejects while a result is held.
type RunTask[T, U any] struct {
	fn   func(processor.Message[T]) (U, error)
	next processor.Strategy[U]
	o    options

	// carried is the result the next step rejected; it is valid while carrying.
	carried  processor.Message[U]
	carrying bool
}

// NewRunTask returns a RunTask that maps messages through fn. An error from fn is
// returned from Submit and the message is not forwarded; fn reports a message that can
// never be processed with processor.Invalid.
func NewRunTask[T, U any](fn func(processor.Message[T]) (U, error), next processor.Strategy[U], opts ...Option) *RunTask[T, U] {
	return &RunTask[T, U]{fn: fn, next: next, o: buildOptions(opts)}
}

// Submit runs fn on msg and forwards the result. Filtered messages pass through.
func (s *RunTask[T, U]) Submit(msg processor.Message[T]) error {
	if s.carrying {
		return processor.ErrMessageRejected
	}
	if msg.Filtered() {
		// Nothing was computed, so a rejection can go straight back to the caller.
		return s.next.Submit(processor.AsFiltered[U](msg))
	}
	v, err := s.fn(msg)
	if err != nil {
		return err
	}
	out := processor.WithPayload(msg, v)
	if err := s.next.Submit(out); err != nil {
		if !errors.Is(err, processor.ErrMessageRejected) {
			return err
		}
		s.carried, s.carrying = out, true
	}
	return nil
}

// Poll polls the next step and offers it the held result again.
func (s *RunTask[T, U]) Poll() error {
	if err := s.next.Poll(); err != nil {
		return err
	}
	return ignoreRejected(s.flush())
}

// flush offers the held result to the next step. It returns ErrMessageRejected while
// the result is still held.
func (s *RunTask[T, U]) flush() error {
	if !s.carrying {
		return nil
	}
	if err := s.next.Submit(s.carried); err != nil {
		return err
	}
	var zero processor.Message[U]
	s.carried, s.carrying = zero, false
	return nil
}

// Close does nothing: RunTask holds at most one result, which Join flushes.
func (s *RunTask[T, U]) Close() {}

// Join offers the held result until the next step takes it or ctx is done, then
// closes and joins the next step.
func (s *RunTask[T, U]) Join(ctx context.Context) error {
	err := drain(ctx, s.flush, s.next.Poll, func() {
		s.o.metrics.Increment("strategies.run_task.join.backpressure", 1)
	})
	s.next.Close()
	return errors.Join(err, s.next.Join(ctx))
}

// Terminate drops the held result and terminates the next step.
func (s *RunTask[T, U]) Terminate() {
	var zero processor.Message[U]
	s.carried, s.carrying = zero, false
	s.next.Terminate()
}

// drain offers held work until the next step takes it or ctx is done; see held.Drain.
func drain(ctx context.Context, flush, poll func() error, rejected func()) error {
	_, err := held.Drain(ctx, flush, poll, rejected)
	return err
}

// ignoreRejected turns a rejection into nil: held work is retried on the next Poll.
func ignoreRejected(err error) error {
	if errors.Is(err, processor.ErrMessageRejected) {
		return nil
	}
	return err
}
