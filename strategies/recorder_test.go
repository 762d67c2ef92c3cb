package strategies

import (
	"context"
	"sync"

	"github.com/creekstream/creek/processor"
)

// recorder is a terminal step for tests: it records what reaches it and rejects
// while reject returns true.
type recorder[T any] struct {
	mu         sync.Mutex
	submitted  []processor.Message[T]
	reject     func(processor.Message[T]) bool
	submitErr  error
	pollErr    error
	polls      int
	closed     bool
	joined     bool
	terminated bool
	joinCtx    context.Context
}

func (r *recorder[T]) Submit(m processor.Message[T]) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		panic("submit after close")
	}
	if r.submitErr != nil {
		return r.submitErr
	}
	if r.reject != nil && r.reject(m) {
		return processor.ErrMessageRejected
	}
	r.submitted = append(r.submitted, m)
	return nil
}

func (r *recorder[T]) Poll() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.polls++
	return r.pollErr
}

func (r *recorder[T]) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
}

func (r *recorder[T]) Join(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.joined = true
	r.joinCtx = ctx
	return nil
}

func (r *recorder[T]) Terminate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.terminated = true
}

// messages returns a copy of what was submitted so far.
func (r *recorder[T]) messages() []processor.Message[T] {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]processor.Message[T](nil), r.submitted...)
}

// rejectAll makes the recorder reject every message until it is called with false.
func (r *recorder[T]) rejectAll(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.reject = func(processor.Message[T]) bool { return true }
	} else {
		r.reject = nil
	}
}
