package strategies

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/creekstream/creek/internal/inflight"
	"github.com/creekstream/creek/processor"
)

// BatchLimits says when Reduce and Batch emit the batch they are building: when its
// size reaches MaxSize or MaxWait has passed since its first message, whichever comes
// first. At least one limit must be set; Join emits a partial batch.
type BatchLimits[T any] struct {
	// MaxSize is the batch size that triggers emission; 0 means no size limit.
	MaxSize int
	// MaxWait is how long after its first message a batch is emitted; 0 means no
	// time limit.
	MaxWait time.Duration
	// Size returns the size of one message. The default counts every message as 1;
	// return bytes, say, to bound batches by volume.
	Size func(processor.Message[T]) int
}

func (l BatchLimits[T]) validate() error {
	if l.MaxSize < 0 || l.MaxWait < 0 {
		return fmt.Errorf("strategies: batch limits MaxSize %d and MaxWait %v must not be negative", l.MaxSize, l.MaxWait)
	}
	if l.MaxSize == 0 && l.MaxWait == 0 {
		return errors.New("strategies: batch limits need MaxSize > 0 or MaxWait > 0, or batches are only emitted on Join")
	}
	return nil
}

// Reduce folds messages into an accumulator and hands it to the next step when the
// batch reaches its size or time limit. The emitted message carries the merged
// committables of the batch and the latest timestamp.
//
// When the next step rejects a batch, Reduce keeps it, offers it again from Poll and
// rejects new messages meanwhile.
type Reduce[T, A any] struct {
	limits     BatchLimits[T]
	accumulate func(A, processor.Message[T]) (A, error)
	initial    func() A
	next       processor.Strategy[A]
	o          options

	// The batch being built; open is false between batches.
	open    bool
	acc     A
	size    int
	started time.Time
	latest  time.Time
	offsets map[processor.Partition]int64
	// ctx is the batch's context, from its first message (processor.BatchContext).
	ctx context.Context

	held inflight.Slot[A]
}

// NewReduce returns a Reduce that starts every batch with initial() and folds each
// message into it with accumulate. An error from accumulate is returned from Submit and
// leaves the batch as it was.
func NewReduce[T, A any](limits BatchLimits[T], accumulate func(A, processor.Message[T]) (A, error), initial func() A, next processor.Strategy[A], opts ...Option) (*Reduce[T, A], error) {
	if err := limits.validate(); err != nil {
		return nil, err
	}
	if accumulate == nil || initial == nil {
		return nil, errors.New("strategies: reduce needs both an accumulate and an initial function")
	}
	return &Reduce[T, A]{limits: limits, accumulate: accumulate, initial: initial, next: next, o: buildOptions(opts)}, nil
}

// Submit folds msg into the current batch. A filtered message joins the open batch's
// committable, so that its offsets are not committed before the batch; with no batch
// open it is forwarded at once.
func (s *Reduce[T, A]) Submit(msg processor.Message[T]) error {
	if s.held.Full() {
		return processor.ErrMessageRejected
	}
	if s.open && s.timeUp() {
		// Emit the expired batch first so that msg starts a new one.
		if err := s.emit(); err != nil {
			return err
		}
		if s.held.Full() {
			return processor.ErrMessageRejected
		}
	}
	if msg.Filtered() {
		if !s.open {
			return s.next.Submit(processor.AsFiltered[A](msg))
		}
		msg.Committable.MergeInto(s.offsets)
		return nil
	}
	acc := s.acc
	if !s.open {
		acc = s.initial()
	}
	acc, err := s.accumulate(acc, msg)
	if err != nil {
		return err
	}
	if !s.open {
		s.open, s.started, s.size = true, s.o.Now(), 0
		s.latest = time.Time{}
		s.ctx = processor.BatchContext(msg.Context())
		if s.offsets == nil {
			s.offsets = make(map[processor.Partition]int64)
		}
	}
	s.acc = acc
	s.size += s.sizeOf(msg)
	if msg.Timestamp.After(s.latest) {
		s.latest = msg.Timestamp
	}
	msg.Committable.MergeInto(s.offsets)
	if s.limits.MaxSize > 0 && s.size >= s.limits.MaxSize {
		return s.emit()
	}
	return nil
}

func (s *Reduce[T, A]) sizeOf(msg processor.Message[T]) int {
	if s.limits.Size == nil {
		return 1
	}
	return s.limits.Size(msg)
}

func (s *Reduce[T, A]) timeUp() bool {
	return s.limits.MaxWait > 0 && s.o.Now().Sub(s.started) >= s.limits.MaxWait
}

// emit closes the open batch and offers it to the next step, holding it if the next
// step rejects.
func (s *Reduce[T, A]) emit() error {
	out := processor.NewMessage(s.acc, processor.CommittableFromMap(s.offsets), s.latest).WithContext(s.ctx)
	s.o.Metrics.Timing("strategies.reduce.batch_time", s.o.Now().Sub(s.started))
	var zero A
	s.open, s.acc, s.offsets, s.ctx = false, zero, nil, nil
	return s.held.Submit(s.next, out)
}

// Poll retries a held batch and emits the open one once its time is up.
func (s *Reduce[T, A]) Poll() error {
	if err := s.next.Poll(); err != nil {
		return err
	}
	if err := s.held.Retry(s.next); err != nil {
		return ignoreRejected(err)
	}
	if s.open && s.timeUp() {
		return s.emit()
	}
	return nil
}

// Close does nothing: Join emits what is left.
func (s *Reduce[T, A]) Close() {}

// Join emits the open batch, partial or not, and offers it until the next step takes
// it or ctx is done; then it closes and joins the next step.
func (s *Reduce[T, A]) Join(ctx context.Context) error {
	return joinHeld(ctx, &s.held, s.next, s.emitOpen, nil)
}

// emitOpen emits the open batch, if there is one, partial or not.
func (s *Reduce[T, A]) emitOpen() error {
	if !s.open {
		return nil
	}
	return s.emit()
}

// Terminate drops the batch and terminates the next step.
func (s *Reduce[T, A]) Terminate() {
	var zero A
	s.open, s.acc, s.offsets, s.ctx = false, zero, nil, nil
	s.held.Clear()
	s.next.Terminate()
}
