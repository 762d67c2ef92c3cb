package strategies

import (
	"context"
	"errors"
	"testing"

	"github.com/creekstream/creek/processor"
)

// scriptedNext answers Submit with answers, one per call, then nil.
type scriptedNext struct {
	answers []error
	offers  int
}

func (n *scriptedNext) Submit(processor.Message[int]) error {
	n.offers++
	if len(n.answers) == 0 {
		return nil
	}
	err := n.answers[0]
	n.answers = n.answers[1:]
	return err
}
func (*scriptedNext) Poll() error                { return nil }
func (*scriptedNext) Close()                     {}
func (*scriptedNext) Join(context.Context) error { return nil }
func (*scriptedNext) Terminate()                 {}

// TestHeldResultReleasedOnFailure checks, for every step that holds a rejected
// result, that a result the next step fails on a retry is released, as on a first
// offer, rather than offered and failed again.
func TestHeldResultReleasedOnFailure(t *testing.T) {
	identity := func(_ context.Context, m processor.Message[int]) (int, error) { return m.Payload, nil }
	for _, tc := range []struct {
		name  string
		build func(t *testing.T, next processor.Strategy[int]) processor.Strategy[int]
	}{
		{"RunTask", func(_ *testing.T, next processor.Strategy[int]) processor.Strategy[int] {
			return NewRunTask(identity, next)
		}},
		{"Filter", func(_ *testing.T, next processor.Strategy[int]) processor.Strategy[int] {
			return NewFilter(func(context.Context, processor.Message[int]) bool { return true }, next)
		}},
		{"Reduce", func(t *testing.T, next processor.Strategy[int]) processor.Strategy[int] {
			s, err := NewReduce(BatchLimits[int]{MaxSize: 1}, func(_ int, m processor.Message[int]) (int, error) { return m.Payload, nil }, func() int { return 0 }, next)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errBoom := errors.New("boom")
			next := &scriptedNext{answers: []error{processor.ErrMessageRejected, errBoom}}
			s := tc.build(t, next)
			if err := s.Submit(brokerMsg(1, tp0, 0)); err != nil {
				t.Fatalf("Submit = %v, want the rejection absorbed", err)
			}
			if err := s.Poll(); !errors.Is(err, errBoom) {
				t.Fatalf("first Poll = %v, want %v", err, errBoom)
			}
			if err := s.Poll(); err != nil {
				t.Fatalf("second Poll = %v, want nil: the failed result is released", err)
			}
			if err := s.Submit(brokerMsg(2, tp0, 1)); err != nil {
				t.Fatalf("Submit after the failure = %v, want it taken", err)
			}
			if next.offers != 3 {
				t.Fatalf("next step was offered %d messages, want 3", next.offers)
			}
		})
	}
}

// TestQueuedResultReleasedOnFailure is the same for the steps that forward from an
// ordered queue: a result the next step fails is passed over, not offered again.
func TestQueuedResultReleasedOnFailure(t *testing.T) {
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name string
		// run submits two messages, makes their results ready and returns the step.
		run func(t *testing.T, next processor.Strategy[int]) processor.Strategy[int]
	}{
		{"RunTaskConcurrently", func(t *testing.T, next processor.Strategy[int]) processor.Strategy[int] {
			s := mustConcurrently(t, func(_ context.Context, m processor.Message[int]) (int, error) { return m.Payload, nil }, 1, 4, next)
			for i := range 2 {
				if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 2 {
				mustCloseWithin(t, taskDone(t, s, i), "the task")
			}
			return s
		}},
		{"Produce", func(t *testing.T, next processor.Strategy[int]) processor.Strategy[int] {
			prod := &ackingIntProducer{}
			s, err := NewProduce[int](prod, "out", next, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
					t.Fatal(err)
				}
			}
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := &scriptedNext{answers: []error{processor.ErrMessageRejected, errBoom}}
			s := tc.run(t, next)
			// Join, not Terminate: it waits for the workers, which goleak checks later.
			defer func() {
				if err := s.Join(context.Background()); err != nil {
					t.Errorf("Join = %v", err)
				}
			}()
			if err := s.Poll(); err != nil {
				t.Fatalf("first Poll = %v, want the rejection absorbed", err)
			}
			if err := s.Poll(); !errors.Is(err, errBoom) {
				t.Fatalf("second Poll = %v, want %v", err, errBoom)
			}
			if err := s.Poll(); err != nil {
				t.Fatalf("third Poll = %v, want nil: the failed result is passed over", err)
			}
			if next.offers != 3 {
				t.Fatalf("next step was offered %d messages, want 3: the first twice, then the second", next.offers)
			}
		})
	}
}

// ackingIntProducer resolves every delivery as written at once.
type ackingIntProducer struct{}

func (ackingIntProducer) Produce(context.Context, string, int) *processor.Delivery {
	d := processor.NewDelivery()
	d.Resolve(processor.Position{}, nil)
	return d
}
