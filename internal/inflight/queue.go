package inflight

import (
	"context"
)

// Queue holds work in flight and hands it on in the order it was pushed, whatever
// order it finishes in. The zero value is an empty queue. It is not safe for
// concurrent use.
type Queue[T any] struct {
	// entries[head:] are the entries not yet forwarded, oldest first. A moving head
	// keeps the array for reuse where re-slicing would creep along it and allocate a
	// new one every time the queue empties.
	entries []entry[T]
	head    int
}

type entry[T any] struct {
	v    T
	done <-chan struct{}
}

// Push appends v, which is finished once done is closed; a nil done means it is
// finished already.
func (q *Queue[T]) Push(v T, done <-chan struct{}) {
	if q.head > 0 && q.head >= len(q.entries)-q.head {
		q.compact()
	}
	q.entries = append(q.entries, entry[T]{v, done})
}

// compact moves the live entries to the front of the array. Push does so once the
// forwarded part is at least as long as the live one, so the copy is paid for by the
// pops before it and the array stays bounded.
func (q *Queue[T]) compact() {
	n := copy(q.entries, q.entries[q.head:])
	clear(q.entries[n:])
	q.entries, q.head = q.entries[:n], 0
}

// Len returns the number of entries not yet forwarded.
func (q *Queue[T]) Len() int { return len(q.entries) - q.head }

// Cap returns how many entries the queue holds before its array grows.
func (q *Queue[T]) Cap() int { return cap(q.entries) }

// At returns the i-th entry not yet forwarded, from 0 for the oldest; it panics
// unless 0 <= i < Len().
func (q *Queue[T]) At(i int) T { return q.entries[q.head:][i].v }

// Clear drops every entry.
func (q *Queue[T]) Clear() {
	clear(q.entries)
	q.entries, q.head = q.entries[:0], 0
}

// Forward hands the finished entries at the head to fn, oldest first, and stops at
// the first one not finished yet. An entry fn returns an error for stays at the head,
// to be offered again, and Forward returns the error.
func (q *Queue[T]) Forward(fn func(T) error) error {
	for q.head < len(q.entries) {
		e := &q.entries[q.head]
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
	for q.Len() > 0 {
		if abandoned, err := q.FinishHead(ctx, fn, poll); abandoned || err != nil {
			return abandoned, err
		}
	}
	return false, nil
}

// FinishHead is Finish for the oldest entry alone, for an owner that has more to do
// between entries, such as pushing work that waited for room. It does nothing on an
// empty queue.
func (q *Queue[T]) FinishHead(ctx context.Context, fn func(T) error, poll func() error) (abandoned bool, err error) {
	if q.Len() == 0 {
		return false, nil
	}
	e := &q.entries[q.head]
	if e.done != nil {
		// Look at done alone first: with ctx already ended, a select on both would
		// pick at random and could abandon an entry that is finished.
		select {
		case <-e.done:
		default:
			select {
			case <-e.done:
			case <-ctx.Done():
				return true, nil
			}
		}
		e.done = nil
	}
	v := e.v
	if abandoned, err := Drain(ctx, func() error { return fn(v) }, poll, nil); abandoned || err != nil {
		return abandoned, err
	}
	q.pop()
	return false, nil
}

func (q *Queue[T]) pop() {
	var zero entry[T]
	q.entries[q.head] = zero
	q.head++
	if q.head == len(q.entries) {
		q.entries, q.head = q.entries[:0], 0
	}
}
