package pipeline_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
	"github.com/creekstream/creek/strategies"
)

var p0 = processor.Partition{Topic: "t", Index: 0}

// outputs records, in order, what reaches the end of a pipeline.
type outputs struct {
	mu  sync.Mutex
	got []string
}

func (o *outputs) add(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, s)
}

func (o *outputs) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.got...)
}

// tap is a hand-written strategy that records every payload it passes on.
type tap[T any] struct {
	next processor.Strategy[T]
	out  *outputs
}

func (s tap[T]) Submit(m processor.Message[T]) error {
	if err := s.next.Submit(m); err != nil {
		return err
	}
	if !m.Filtered() {
		s.out.add(fmt.Sprint(m.Payload))
	}
	return nil
}
func (s tap[T]) Poll() error                    { return s.next.Poll() }
func (s tap[T]) Close()                         { s.next.Close() }
func (s tap[T]) Join(ctx context.Context) error { return s.next.Join(ctx) }
func (s tap[T]) Terminate()                     { s.next.Terminate() }

// record ends st with a tap into out and the commit: the factory to run.
func record[S, T any](st pipeline.Stage[S, T], out *outputs) *pipeline.Factory[S] {
	return pipeline.Commit(pipeline.Through(st, func(next processor.Strategy[T], _ []strategies.Option) (processor.Strategy[T], error) {
		return tap[T]{next: next, out: out}, nil
	}))
}

// runUntilCommitted runs factory over inputs on partition p0 until all of them are
// committed, then stops the processor.
func runUntilCommitted(t *testing.T, factory processor.Factory[string], cfg processor.Config[string], inputs ...string) *processortest.Harness[string] {
	t.Helper()
	if cfg.CommitPolicy == (processor.CommitPolicy{}) {
		cfg.CommitPolicy = processor.ImmediateCommit()
	}
	h := newStartedHarness(t, factory, cfg, inputs...)
	want := int64(len(inputs))
	h.WaitUntil(fmt.Sprintf("offset %d committed", want), func() bool { return h.Consumer.Committed(p0) == want })
	if err := h.Stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return h
}

// fakeDLQ records what is dead-lettered; every delivery succeeds at once.
type fakeDLQ struct {
	mu  sync.Mutex
	got []*processor.InvalidMessageError
	raw []string
}

func (d *fakeDLQ) Produce(_ context.Context, m processor.Message[string], inv *processor.InvalidMessageError) *processor.Delivery {
	d.mu.Lock()
	d.got = append(d.got, inv)
	d.raw = append(d.raw, m.Payload)
	d.mu.Unlock()
	del := processor.NewDelivery()
	del.Resolve(processor.Position{}, nil)
	return del
}

func (d *fakeDLQ) letters() ([]*processor.InvalidMessageError, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*processor.InvalidMessageError(nil), d.got...), append([]string(nil), d.raw...)
}

func dlqPolicy(d *fakeDLQ) *processor.DLQPolicy[string] {
	return &processor.DLQPolicy[string]{Producer: d, Size: func(s string) int { return len(s) }}
}

// newStartedHarness runs factory over inputs on partition p0, assigned.
func newStartedHarness(t *testing.T, factory processor.Factory[string], cfg processor.Config[string], inputs ...string) *processortest.Harness[string] {
	t.Helper()
	h := processortest.NewHarness(t, nil, factory, cfg)
	h.Consumer.Produce(p0, inputs...)
	h.Start()
	h.Await(h.Consumer.Assign(p0), "assignment of p0")
	return h
}
