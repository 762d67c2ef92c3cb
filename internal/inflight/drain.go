package inflight

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/creekstream/creek/processor"
)

// RetryInterval is how long Drain waits before offering held work again, so that a
// next step draining asynchronously (a producer, a worker pool, Redis) is not spun
// on.
const RetryInterval = time.Millisecond

// Drain calls offer until it stops returning processor.ErrMessageRejected or ctx is
// done, calling rejected (if not nil) and poll (the next step's Poll) between
// attempts. It reports abandoned when ctx ended with work still held, which is not
// an error: nothing past that work is committed, so it is redelivered.
func Drain(ctx context.Context, offer, poll func() error, rejected func()) (abandoned bool, err error) {
	var t *time.Timer
	for {
		err := offer()
		if !errors.Is(err, processor.ErrMessageRejected) {
			return false, err
		}
		if rejected != nil {
			rejected()
		}
		if err := poll(); err != nil {
			return false, err
		}
		if ctx.Err() != nil {
			return true, nil
		}
		if t == nil {
			t = time.NewTimer(RetryInterval)
			defer t.Stop()
		} else {
			t.Reset(RetryInterval)
		}
		select {
		case <-ctx.Done():
			return true, nil
		case <-t.C:
		}
	}
}

// Wait waits for wg until ctx is done and reports whether every goroutine exited.
// The goroutine it waits on ends with them: callers only give up on goroutines they
// have already told to stop.
func Wait(ctx context.Context, wg *sync.WaitGroup) bool {
	exited := make(chan struct{})
	go func() {
		wg.Wait()
		close(exited)
	}()
	select {
	case <-exited:
		return true
	case <-ctx.Done():
		return false
	}
}
