package strategies

import "github.com/creekstream/creek/processor"

// NewBatch returns a Reduce that collects the original messages into a slice, in
// submit order. The emitted message carries the merged committables of the batch, so
// Unbatch can later hand the messages on one by one.
func NewBatch[T any](limits BatchLimits[T], next processor.Strategy[[]processor.Message[T]], opts ...Option) (*Reduce[T, []processor.Message[T]], error) {
	initial := func() []processor.Message[T] {
		if limits.MaxSize > 0 && limits.Size == nil {
			return make([]processor.Message[T], 0, limits.MaxSize)
		}
		return nil
	}
	return NewReduce(limits, appendMessage[T], initial, next, opts...)
}

func appendMessage[T any](b []processor.Message[T], m processor.Message[T]) ([]processor.Message[T], error) {
	return append(b, m), nil
}
