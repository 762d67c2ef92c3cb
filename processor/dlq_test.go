package processor

import (
	"context"
	"sync"
)

// fakeDLQ records what is dead-lettered. Deliveries resolve at once unless hold is
// set, and fail with err when it is set.
type fakeDLQ struct {
	n *notifier

	mu         sync.Mutex
	produced   []Message[string]
	reasons    []*InvalidMessageError
	deliveries []*Delivery
	hold       bool
	err        error
}

func (f *fakeDLQ) Produce(ctx context.Context, m Message[string], inv *InvalidMessageError) *Delivery {
	f.mu.Lock()
	d := NewDelivery()
	f.produced = append(f.produced, m)
	f.reasons = append(f.reasons, inv)
	f.deliveries = append(f.deliveries, d)
	if !f.hold {
		d.Resolve(Position{}, f.err)
	}
	f.mu.Unlock()
	if f.n != nil {
		f.n.notify()
	}
	return d
}
