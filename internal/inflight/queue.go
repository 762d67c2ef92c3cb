package inflight

import (
	"context"
)

// Queue holds work in flight and hands it on in the order it was pushed, whatever
// order it finishes in. The zero value is an empty queue. It is not safe for
// concurrent use.
type Queue[T any] struct {
	entries []entry[T]
}

type entry[T any] struct {
	v    T
	done <-chan struct{}
}

// Push appends v, which is finished once done is closed; a nil done means it is
// finished already.
func (q *Queue[T]) Push(v T, done <-chan struct{}) {
	q.entries = append(q.entries, entry[T]{v, done})
}

// Len returns the number of entries not yet forwarded.
func (q *Queue[T]) Len() int { return len(q.entries) }

// Clear drops every entry.
func (q *Queue[T]) Clear() {
	clear(q.entries)
	q.entries = q.entries[:0]
}

// Forward hands the finished entries at the head to fn, oldest first, and stops at
// the first one not finished yet. An entry fn returns an error for stays at the head,
// to be offered again, and Forward returns the error.
func (q *Queue[T]) Forward(fn func(T) error) error {
	for len(q.entries) > 0 {
		e := &q.entries[0]
		if e.done != nil {
			select {
			case <-e.done:
				e.done = nil
			default:
				return nil
			}
		}
		if err := fn(e.v); err != nil {
			return err
		}
		q.pop()
	}
	return nil
}

// Finish forwards every entry in order, waiting for each to finish, until the queue
// is empty or ctx is done. While fn rejects the head with
// processor.ErrMessageRejected it polls and offers it again (see Drain). It reports
// abandoned when ctx ended with entries left, which is not an error: nothing past
// them is committed, so they are redelivered. Any other error of fn or poll ends it.
func (q *Queue[T]) Finish(ctx context.Context, fn func(T) error, poll func() error) (abandoned bool, err error) {
	for len(q.entries) > 0 {
		e := &q.entries[0]
		if e.done != nil {
			select {
			case <-e.done:
				e.done = nil
			case <-ctx.Done():
				return true, nil
			}
		}
		abandoned, err := Drain(ctx, func() error { return fn(e.v) }, poll, nil)
		if abandoned || err != nil {
			return abandoned, err
		}
		q.pop()
	}
	return false, nil
}

func (q *Queue[T]) pop() {
	var zero entry[T]
	q.entries[0] = zero
	q.entries = q.entries[1:]
	if len(q.entries) == 0 {
		// Start over at the front of the array instead of creeping along it.
		q.entries = q.entries[:0:0]
	}
}
