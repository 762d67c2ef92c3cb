package strategies

import (
	"context"
	"time"

	"github.com/creekstream/creek/internal/commitstate"
	"github.com/creekstream/creek/internal/inflight"
	"github.com/creekstream/creek/processor"
)

// Filter forwards the messages for which a predicate holds and drops the others.
//
// Without a commit policy the offsets of dropped messages move on with the next
// message that passes. With one, Filter gathers the dropped offsets and forwards them
// as a filtered message whenever the policy says so, so that a partition whose
// messages are all dropped still gets committed.
type Filter[T any] struct {
	pred func(context.Context, processor.Message[T]) bool
	next processor.Strategy[T]
	o    options

	// policy is nil without a commit policy; dropped then holds the offsets of dropped
	// messages not yet forwarded, and droppedAt the latest of their timestamps.
	policy    *commitstate.State[processor.Partition]
	dropped   map[processor.Partition]int64
	droppedAt time.Time

	held inflight.Slot[T]
}

// NewFilter returns a Filter that forwards the messages for which pred returns true;
// pred gets the message's context.
func NewFilter[T any](pred func(context.Context, processor.Message[T]) bool, next processor.Strategy[T], opts ...Option) *Filter[T] {
	return &Filter[T]{pred: pred, next: next, o: buildOptions(opts)}
}

// NewFilterWithCommitPolicy returns a Filter that also forwards the offsets of dropped
// messages, as a filtered message, whenever policy says they should be committed.
func NewFilterWithCommitPolicy[T any](pred func(context.Context, processor.Message[T]) bool, policy processor.CommitPolicy, next processor.Strategy[T], opts ...Option) (*Filter[T], error) {
	s := NewFilter(pred, next, opts...)
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	s.policy = commitstate.New[processor.Partition](policy.MinInterval, policy.MinMessages, s.o.Now())
	s.dropped = make(map[processor.Partition]int64)
	return s, nil
}

// Submit forwards msg if it is filtered already or the predicate holds, and drops it
// otherwise.
func (s *Filter[T]) Submit(msg processor.Message[T]) error {
	if s.held.Full() {
		return processor.ErrMessageRejected
	}
	if msg.Filtered() || s.pred(msg.Context(), msg) {
		if len(s.dropped) > 0 {
			// msg carries these partitions past the dropped offsets already.
			for p, o := range msg.Committable.All() {
				if d, ok := s.dropped[p]; ok && d <= o {
					delete(s.dropped, p)
				}
			}
		}
		return s.held.Submit(s.next, msg)
	}
	s.o.Metrics.Increment("strategies.filter.dropped_messages", 1)
	if s.policy == nil {
		return nil
	}
	msg.Committable.MergeInto(s.dropped)
	if msg.Timestamp.After(s.droppedAt) {
		s.droppedAt = msg.Timestamp
	}
	return s.commitDropped(false)
}

// commitDropped forwards the dropped offsets as one filtered message when the policy
// says so, or always with force.
func (s *Filter[T]) commitDropped(force bool) error {
	if len(s.dropped) == 0 {
		return nil
	}
	now := s.o.Now()
	if !force && !s.policy.ShouldCommit(now, s.dropped) {
		return nil
	}
	s.policy.DidCommit(now, s.dropped)
	out := processor.NewFiltered[T](processor.CommittableFromMap(s.dropped), s.droppedAt)
	s.dropped, s.droppedAt = make(map[processor.Partition]int64), time.Time{}
	return s.held.Submit(s.next, out)
}

// Poll retries a held message and lets a time-based commit policy forward the
// dropped offsets.
func (s *Filter[T]) Poll() error {
	if err := s.next.Poll(); err != nil {
		return err
	}
	if err := s.held.Retry(s.next); err != nil {
		return ignoreRejected(err)
	}
	if s.policy != nil {
		return s.commitDropped(false)
	}
	return nil
}

// Close does nothing: Join forwards what is left.
func (s *Filter[T]) Close() {}

// Join forwards the held message and the pending dropped offsets until the next
// step takes them or ctx is done, then closes and joins the next step.
func (s *Filter[T]) Join(ctx context.Context) error {
	return joinHeld(ctx, &s.held, s.next, s.commitAllDropped, nil)
}

// commitAllDropped forwards the pending dropped offsets, whatever the policy says.
func (s *Filter[T]) commitAllDropped() error {
	if s.policy == nil {
		return nil
	}
	return s.commitDropped(true)
}

// Terminate drops what is held and terminates the next step.
func (s *Filter[T]) Terminate() {
	s.held.Clear()
	if s.dropped != nil {
		clear(s.dropped)
	}
	s.next.Terminate()
}
