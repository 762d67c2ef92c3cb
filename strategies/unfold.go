package strategies

import (
	"context"
	"errors"

	"github.com/creekstream/creek/processor"
)

// Unfold turns each payload into any number of messages. Only the last output carries
// the input's committable; the earlier ones carry an empty one, so nothing is
// committed until every output of a message has gone downstream.
//
// When the next step rejects an output, Unfold holds the rest, offers them again from
// Poll and rejects new messages until they are gone.
type Unfold[T, U any] struct {
	fn   func(context.Context, processor.Message[T]) ([]U, error)
	next processor.Strategy[U]
	out  outbox[U]
}

// NewUnfold returns an Unfold that expands messages with fn, which gets the
// message's context; every output keeps it. An error from fn is returned from Submit
// and nothing is forwarded (a message whose context was cancelled is dropped, see
// abandoned). A message that fn expands to nothing
// is forwarded as a filtered message, so that its offset is still committed.
// It logs and records nothing; opts are accepted, and ignored, so that one list of
// options can be given to every step of a chain.
func NewUnfold[T, U any](fn func(context.Context, processor.Message[T]) ([]U, error), next processor.Strategy[U], opts ...Option) *Unfold[T, U] {
	return &Unfold[T, U]{fn: fn, next: next}
}

// Submit expands msg and forwards the outputs. Filtered messages pass through.
func (s *Unfold[T, U]) Submit(msg processor.Message[T]) error {
	if !s.out.empty() {
		return processor.ErrMessageRejected
	}
	if msg.Filtered() {
		return s.next.Submit(processor.AsFiltered[U](msg))
	}
	vs, err := s.fn(msg.Context(), msg)
	if err != nil {
		if abandoned(msg) {
			return nil
		}
		return err
	}
	if len(vs) == 0 {
		s.out.set(nil, processor.AsFiltered[U](msg))
	} else {
		head := make([]processor.Message[U], len(vs)-1)
		for i, v := range vs[:len(vs)-1] {
			head[i] = processor.NewMessage(v, processor.Committable{}, msg.Timestamp).WithContext(msg.Context())
		}
		s.out.set(head, processor.WithPayload(msg, vs[len(vs)-1]))
	}
	return ignoreRejected(s.out.flush(s.next))
}

// Poll offers held outputs again.
func (s *Unfold[T, U]) Poll() error {
	if err := s.next.Poll(); err != nil {
		return err
	}
	return ignoreRejected(s.out.flush(s.next))
}

// Close does nothing: Join forwards what is held.
func (s *Unfold[T, U]) Close() {}

// Join offers held outputs until the next step takes them or ctx is done, then closes
// and joins the next step.
func (s *Unfold[T, U]) Join(ctx context.Context) error {
	err := drain(ctx, func() error { return s.out.flush(s.next) }, s.next.Poll)
	s.next.Close()
	return errors.Join(err, s.next.Join(ctx))
}

// Terminate drops held outputs and terminates the next step.
func (s *Unfold[T, U]) Terminate() {
	s.out.reset()
	s.next.Terminate()
}

// outbox holds messages the next step has yet to take: msgs[i:], then tail. The tail
// is separate so that a batch's own slice can be forwarded without copying while its
// last message gets a different committable.
type outbox[T any] struct {
	msgs    []processor.Message[T]
	i       int
	tail    processor.Message[T]
	hasTail bool
}

func (b *outbox[T]) empty() bool { return !b.hasTail }

func (b *outbox[T]) set(msgs []processor.Message[T], tail processor.Message[T]) {
	b.msgs, b.i, b.tail, b.hasTail = msgs, 0, tail, true
}

// flush submits held messages in order until the next step rejects one; it returns
// ErrMessageRejected while messages are still held.
func (b *outbox[T]) flush(next processor.Strategy[T]) error {
	if !b.hasTail {
		return nil
	}
	for ; b.i < len(b.msgs); b.i++ {
		if err := next.Submit(b.msgs[b.i]); err != nil {
			return err
		}
	}
	if err := next.Submit(b.tail); err != nil {
		return err
	}
	b.reset()
	return nil
}

func (b *outbox[T]) reset() { *b = outbox[T]{} }
