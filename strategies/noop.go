package strategies

import (
	"context"

	"github.com/creekstream/creek/processor"
)

// Noop accepts every message and discards it. It ends a chain whose results need
// no further step and whose offsets are not to be committed, as in tests and dry runs.
type Noop[T any] struct{}

// NewNoop returns a Noop.
func NewNoop[T any]() Noop[T] { return Noop[T]{} }

// Submit discards msg.
func (Noop[T]) Submit(processor.Message[T]) error { return nil }

// Poll does nothing.
func (Noop[T]) Poll() error { return nil }

// Close does nothing.
func (Noop[T]) Close() {}

// Join returns at once: nothing is ever pending.
func (Noop[T]) Join(context.Context) error { return nil }

// Terminate does nothing.
func (Noop[T]) Terminate() {}
