package processor_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
)

var (
	p0 = processor.Partition{Topic: "t", Index: 0}
	p1 = processor.Partition{Topic: "t", Index: 1}
)

// harness is processortest's Harness over its fake Factory, as most tests here use it.
type harness struct {
	*processortest.Harness[string]
	factory *processortest.Factory[string]
}

// newHarness builds a processor over the fake Consumer and a fake Factory that
// calls setup on every strategy it builds.
func newHarness(t *testing.T, cfg processor.Config[string], setup func(*processortest.Strategy[string])) *harness {
	t.Helper()
	ev := processortest.NewEvents()
	f := processortest.NewFactory(ev, setup)
	return &harness{Harness: processortest.NewHarness[string](t, ev, f, cfg), factory: f}
}

// produce appends n messages to p at offsets from, from+1, ..., with payloads
// "p@offset"; from must be the partition's next offset.
func (h *harness) produce(p processor.Partition, from, n int64) {
	payloads := make([]string, 0, n)
	for o := from; o < from+n; o++ {
		payloads = append(payloads, fmt.Sprintf("%s@%d", p, o))
	}
	h.Consumer.Produce(p, payloads...)
}

// nopConsumer, nopFactory and nopDLQ satisfy the interfaces for tests of New.
type nopConsumer[T any] struct{}

func (nopConsumer[T]) Subscribe([]string, processor.RebalanceCallbacks) error { return nil }
func (nopConsumer[T]) Poll(context.Context, time.Duration) (processor.Message[T], bool, error) {
	return processor.Message[T]{}, false, nil
}
func (nopConsumer[T]) Pause([]processor.Partition)                                 {}
func (nopConsumer[T]) Resume([]processor.Partition)                                {}
func (nopConsumer[T]) Paused() []processor.Partition                               { return nil }
func (nopConsumer[T]) Assignment() []processor.Partition                           { return nil }
func (nopConsumer[T]) Commit(context.Context, map[processor.Partition]int64) error { return nil }
func (nopConsumer[T]) Close() error                                                { return nil }

func nopFactory[T any]() processor.Factory[T] {
	return processor.FactoryFunc[T](func(processor.CommitFunc, []processor.Partition) (processor.Strategy[T], error) {
		return nil, errors.New("unused")
	})
}

type nopDLQ[T any] struct{}

func (nopDLQ[T]) Produce(context.Context, processor.Message[T], *processor.InvalidMessageError) *processor.Delivery {
	d := processor.NewDelivery()
	d.Resolve(processor.Position{}, nil)
	return d
}
