package strategies

import (
	"context"
	"errors"

	"github.com/creekstream/creek/internal/inflight"
	"github.com/creekstream/creek/processor"
)

// RunTask maps each payload through a function and hands the result to the next step.
//
// When the next step rejects a result, RunTask keeps it and offers it again from Poll,
// so the function runs exactly once per message; Submit rejects while a result is held.
// Given a run of messages (SubmitRun) it maps them all and hands the results on as a
// run if the next step takes runs; what the next step rejects of it is held the same
// way.
type RunTask[T, U any] struct {
	fn   func(context.Context, processor.Message[T]) (U, error)
	next processor.Strategy[U]
	// nextRun is next if it takes runs.
	nextRun processor.RunSubmitter[U]
	o       options
	held    inflight.Slot[U]
	// out is the reused array a run's results are handed on in; heldRun[runHead:]
	// are results of a run that the next step did not take yet.
	out     []processor.Message[U]
	heldRun []processor.Message[U]
	runHead int
	// deferred is an error of a run that SubmitRun could not return with another
	// one; Poll returns it.
	deferred error
}

// NewRunTask returns a RunTask that maps messages through fn, which gets the
// message's context. An error from fn is returned from Submit and the message is not
// forwarded; fn reports a message that can never be processed with processor.Invalid.
// A message whose context was cancelled when fn failed is dropped instead (see
// abandoned).
func NewRunTask[T, U any](fn func(context.Context, processor.Message[T]) (U, error), next processor.Strategy[U], opts ...Option) *RunTask[T, U] {
	nextRun, _ := next.(processor.RunSubmitter[U])
	return &RunTask[T, U]{fn: fn, next: next, nextRun: nextRun, o: buildOptions(opts)}
}

// Submit runs fn on msg and forwards the result. Filtered messages pass through.
func (s *RunTask[T, U]) Submit(msg processor.Message[T]) error {
	if s.holding() {
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

func (s *RunTask[T, U]) holding() bool { return s.held.Full() || s.runHead < len(s.heldRun) }

// SubmitRun runs fn on each of msgs and hands the results on as a run, if the next
// step takes runs; otherwise it submits them one by one. It takes every message
// unless it holds results already (ErrMessageRejected) or fn fails.
func (s *RunTask[T, U]) SubmitRun(msgs []processor.Message[T]) (int, error) {
	next := s.nextRun
	if next == nil {
		for i := range msgs {
			if err := s.Submit(msgs[i]); err != nil {
				if _, inv := processor.AsInvalid(err); inv {
					return i + 1, err
				}
				return i, err
			}
		}
		return len(msgs), nil
	}
	if s.holding() {
		return 0, processor.ErrMessageRejected
	}
	out, inPlace, n, fnErr := s.mapRun(msgs)
	if fnErr != nil {
		if _, inv := processor.AsInvalid(fnErr); inv {
			n++ // an invalid message counts as taken
		}
	}
	err := s.handOn(next, out)
	if !inPlace {
		clear(out)
		s.out = out[:0]
	}
	switch {
	case err == nil:
		return n, fnErr
	case fnErr == nil:
		return n, err
	}
	// Two errors: the next step's (about an earlier message) now, fn's from Poll.
	s.deferred = fnErr
	return n, err
}

// mapRun runs fn on msgs until it fails, and returns the results, how many
// messages it took and fn's error. Where T and U are one type it writes each
// result over its message's payload, as RunSubmitter allows, and the results are
// msgs itself (inPlace): copying every message into out was about half of
// RunTask's cost per message. From the first message fn abandons, which must be
// dropped, the results are copied into out instead.
func (s *RunTask[T, U]) mapRun(msgs []processor.Message[T]) (out []processor.Message[U], inPlace bool, n int, fnErr error) {
	same, inPlace := any(msgs).([]processor.Message[U])
	out = s.out[:0]
	for ; n < len(msgs); n++ {
		m := &msgs[n]
		if m.Filtered() {
			if inPlace {
				var none U
				same[n].Payload = none
			} else {
				out = append(out, processor.AsFiltered[U](*m))
			}
			continue
		}
		v, err := s.fn(m.Context(), *m)
		if err != nil {
			if abandoned(*m) {
				if inPlace {
					out, inPlace = append(out, same[:n]...), false
				}
				continue
			}
			fnErr = err
			break
		}
		if inPlace {
			same[n].Payload = v
		} else {
			out = append(out, processor.WithPayload(*m, v))
		}
	}
	if inPlace {
		out = same[:n]
	}
	return out, inPlace, n, fnErr
}

// handOn hands results to next as a run and holds what it rejects, or what
// follows an invalid one. It returns the error of the first that was not taken.
func (s *RunTask[T, U]) handOn(next processor.RunSubmitter[U], out []processor.Message[U]) error {
	if len(out) == 0 {
		return nil
	}
	k, err := next.SubmitRun(out)
	if err == nil {
		return nil
	}
	if errors.Is(err, processor.ErrMessageRejected) {
		s.heldRun = append(s.heldRun[:0], out[k:]...)
		s.runHead = 0
		return nil
	}
	if _, inv := processor.AsInvalid(err); inv && k < len(out) {
		s.heldRun = append(s.heldRun[:0], out[k:]...)
		s.runHead = 0
	}
	return err
}

// retryRun offers the held results of a run to the next step again.
func (s *RunTask[T, U]) retryRun() error {
	if s.runHead == len(s.heldRun) {
		return nil
	}
	k, err := s.nextRun.SubmitRun(s.heldRun[s.runHead:])
	clear(s.heldRun[s.runHead : s.runHead+k])
	s.runHead += k
	if s.runHead == len(s.heldRun) {
		s.heldRun, s.runHead = s.heldRun[:0], 0
	}
	return err
}

// Poll polls the next step and offers it the held results again.
func (s *RunTask[T, U]) Poll() error {
	if err := s.next.Poll(); err != nil {
		return err
	}
	if err := ignoreRejected(s.held.Retry(s.next)); err != nil {
		return err
	}
	if err := ignoreRejected(s.retryRun()); err != nil {
		return err
	}
	if err := s.deferred; err != nil {
		s.deferred = nil
		return err
	}
	return nil
}

// Close does nothing: RunTask holds at most one result, which Join flushes.
func (s *RunTask[T, U]) Close() {}

// Join offers the held result until the next step takes it or ctx is done, then
// closes and joins the next step.
func (s *RunTask[T, U]) Join(ctx context.Context) error {
	return joinHeld(ctx, &s.held, s.next, func() error {
		if err := s.retryRun(); err != nil {
			return err
		}
		if s.holding() {
			return processor.ErrMessageRejected
		}
		err := s.deferred
		s.deferred = nil
		return err
	}, func() {
		s.o.Metrics.Increment("strategies.run_task.join.backpressure", 1)
	})
}

// Terminate drops the held result and terminates the next step.
func (s *RunTask[T, U]) Terminate() {
	s.held.Clear()
	clear(s.heldRun)
	s.heldRun, s.runHead, s.deferred = s.heldRun[:0], 0, nil
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
