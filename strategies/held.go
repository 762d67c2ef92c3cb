package strategies

import (
	"context"
	"errors"

	"github.com/creekstream/creek/internal/inflight"
	"github.com/creekstream/creek/processor"
)

// joinHeld is the Join of a step that holds at most one rejected message in slot:
// it offers that message, then whatever last emits (a partial batch, pending
// offsets; last may be nil), until the next step has taken them or ctx is done, and
// then closes and joins the next step. rejected, if not nil, is called on every
// rejection.
func joinHeld[T any](ctx context.Context, slot *inflight.Slot[T], next processor.Strategy[T], last func() error, rejected func()) error {
	_, err := inflight.Drain(ctx, func() error {
		if err := slot.Retry(next); err != nil {
			return err
		}
		if last != nil {
			if err := last(); err != nil {
				return err
			}
		}
		if slot.Full() {
			return processor.ErrMessageRejected
		}
		return nil
	}, next.Poll, rejected)
	next.Close()
	return errors.Join(err, next.Join(ctx))
}

// drain offers held work until the next step takes it or ctx is done; see
// inflight.Drain. Work still held when ctx ends is redelivered, so that is no error.
func drain(ctx context.Context, offer, poll func() error) error {
	_, err := inflight.Drain(ctx, offer, poll, nil)
	return err
}

// ignoreRejected turns a rejection into nil: held work is retried on the next Poll.
func ignoreRejected(err error) error {
	if errors.Is(err, processor.ErrMessageRejected) {
		return nil
	}
	return err
}
