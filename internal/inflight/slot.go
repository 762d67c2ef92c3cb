package inflight

import (
	"errors"

	"github.com/creekstream/creek/processor"
)

// Slot holds the one message a next step rejected, so that a step offers the result
// it computed again instead of computing it again. The zero value is empty. Like a
// Queue it belongs to the goroutine that drives the step.
type Slot[T any] struct {
	msg  processor.Message[T]
	full bool
}

// Full reports whether a message is held; the step rejects new work meanwhile.
func (s *Slot[T]) Full() bool { return s.full }

// Submit offers msg to next and holds it if next rejects it. Only errors other than
// the rejection are returned.
func (s *Slot[T]) Submit(next processor.Strategy[T], msg processor.Message[T]) error {
	if err := next.Submit(msg); err != nil {
		return s.Keep(msg, err)
	}
	return nil
}

// Keep takes err, a next step's answer to msg, and holds msg if err is the
// rejection; it returns any other error. Steps on a hot path call the next step
// themselves and Keep only on an error, which spares them a call per message.
func (s *Slot[T]) Keep(msg processor.Message[T], err error) error {
	if errors.Is(err, processor.ErrMessageRejected) {
		s.msg, s.full = msg, true
		return nil
	}
	return err
}

// Retry offers the held message to next again. It returns
// processor.ErrMessageRejected while the message is still held. Any other outcome
// releases it, as it would have on the first offer: next has taken it, or reported
// it invalid or failed, and offering it again would only repeat that report.
func (s *Slot[T]) Retry(next processor.Strategy[T]) error {
	if !s.full {
		return nil
	}
	err := next.Submit(s.msg)
	if errors.Is(err, processor.ErrMessageRejected) {
		return err
	}
	s.Clear()
	return err
}

// Clear drops the held message.
func (s *Slot[T]) Clear() {
	var zero processor.Message[T]
	s.msg, s.full = zero, false
}
