package strategies

import (
	"context"
	"errors"

	"github.com/creekstream/creek/processor"
)

// Unbatch hands the messages of a batch (as built by Batch) to the next step one by
// one. Each keeps its own committable except the last, which carries the batch's, so
// offsets that the batch merged in (filtered messages, say) are committed with it.
//
// When the next step rejects a message, Unbatch holds the rest of the batch, offers it
// again from Poll and rejects new batches until it has drained.
type Unbatch[T any] struct {
	next processor.Strategy[T]
	out  outbox[T]
}

// NewUnbatch returns an Unbatch that forwards to next.
// It logs and records nothing; opts are accepted, and ignored, so that one list of
// options can be given to every step of a chain.
func NewUnbatch[T any](next processor.Strategy[T], opts ...Option) *Unbatch[T] {
	return &Unbatch[T]{next: next}
}

// Submit forwards the messages of batch. A filtered or empty batch is forwarded as a
// filtered message carrying the batch's committable.
func (s *Unbatch[T]) Submit(batch processor.Message[[]processor.Message[T]]) error {
	if !s.out.empty() {
		return processor.ErrMessageRejected
	}
	msgs := batch.Payload
	if batch.Filtered() || len(msgs) == 0 {
		return s.next.Submit(processor.AsFiltered[T](batch))
	}
	last := msgs[len(msgs)-1]
	if !last.Committable.Equal(batch.Committable) {
		if last.Filtered() {
			last = processor.NewFiltered[T](batch.Committable, last.Timestamp)
		} else {
			last = processor.NewMessage(last.Payload, batch.Committable, last.Timestamp).WithContext(last.Context())
		}
	}
	s.out.set(msgs[:len(msgs)-1], last)
	return ignoreRejected(s.out.flush(s.next))
}

// Poll offers the rest of a held batch again.
func (s *Unbatch[T]) Poll() error {
	if err := s.next.Poll(); err != nil {
		return err
	}
	return ignoreRejected(s.out.flush(s.next))
}

// Close does nothing: Join forwards what is held.
func (s *Unbatch[T]) Close() {}

// Join offers the rest of a held batch until the next step takes it or ctx is done,
// then closes and joins the next step.
func (s *Unbatch[T]) Join(ctx context.Context) error {
	err := drain(ctx, func() error { return s.out.flush(s.next) }, s.next.Poll)
	s.next.Close()
	return errors.Join(err, s.next.Join(ctx))
}

// Terminate drops what is held and terminates the next step.
func (s *Unbatch[T]) Terminate() {
	s.out.reset()
	s.next.Terminate()
}
