package processortest

import (
	"context"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

// Harness runs a processor.StreamProcessor over a fake Consumer, for a test of a
// factory and the strategies it builds. The test's cleanup stops a processor the
// test left running and fails the test if it does not stop.
type Harness[T any] struct {
	// Consumer is the consumer the processor polls.
	Consumer *Consumer[T]
	// Events is what the Consumer, and the doubles sharing it, recorded.
	Events *Events
	// Config is the configuration Processor was built with, after the harness's
	// defaults.
	Config processor.Config[T]
	// Processor is the processor under test. A test may replace it before Start, to
	// run one built over a wrapped Consumer.
	Processor *processor.StreamProcessor[T]

	t      testing.TB
	cancel context.CancelFunc
	done   chan error
}

// NewHarness builds a processor over a new Consumer that records into ev (a new
// Events if nil) and the given factory. Where cfg leaves them zero, it consumes topic
// "t" and polls with timeouts of 10 ms (5 ms while paused), so that tests do not
// wait on idle polls. It fails the test if processor.New refuses cfg.
func NewHarness[T any](t testing.TB, ev *Events, factory processor.Factory[T], cfg processor.Config[T]) *Harness[T] {
	t.Helper()
	if ev == nil {
		ev = NewEvents()
	}
	if cfg.Topics == nil {
		cfg.Topics = []string{"t"}
	}
	if cfg.PollTimeout == 0 {
		cfg.PollTimeout = 10 * time.Millisecond
	}
	if cfg.PausedPollTimeout == 0 {
		cfg.PausedPollTimeout = 5 * time.Millisecond
	}
	h := &Harness[T]{Consumer: NewConsumer[T](ev), Events: ev, Config: cfg, t: t}
	p, err := processor.New[T](h.Consumer, factory, cfg)
	if err != nil {
		t.Fatalf("processor.New: %v", err)
	}
	h.Processor = p
	return h
}

// Start runs the processor on a goroutine of its own.
func (h *Harness[T]) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	p := h.Processor
	go func() { h.done <- p.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(WaitTimeout):
			h.t.Errorf("Run did not return within %v of cancellation", WaitTimeout)
		}
	})
}

// Stop cancels Run and returns its error.
func (h *Harness[T]) Stop() error {
	h.t.Helper()
	h.cancel()
	return h.Wait()
}

// Wait waits for Run to return on its own and returns its error, failing the test
// after WaitTimeout.
func (h *Harness[T]) Wait() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for Stop and the cleanup
		return err
	case <-time.After(WaitTimeout):
		h.t.Fatalf("timed out after %v waiting for Run to return", WaitTimeout)
		return nil
	}
}

// Await waits for ch to be closed, such as the channel of Consumer.Assign, failing
// the test naming what after WaitTimeout.
func (h *Harness[T]) Await(ch <-chan struct{}, what string) {
	h.t.Helper()
	select {
	case <-ch:
	case <-time.After(WaitTimeout):
		h.t.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
	}
}

// WaitUntil waits until cond holds; see Events.WaitUntil.
func (h *Harness[T]) WaitUntil(what string, cond func() bool) {
	h.t.Helper()
	h.Events.WaitUntil(h.t, what, cond)
}
