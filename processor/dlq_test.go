package processor

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics/metricstest"
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
		f.n.Notify()
	}
	return d
}

func (f *fakeDLQ) payloads() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.produced))
	for i, m := range f.produced {
		out[i] = m.Payload
	}
	return out
}

func (f *fakeDLQ) pending() []*Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deliveries)
}

// invalidAt returns a setup under which the strategy reports the given offsets of p0
// invalid from Submit and accepts and stages the rest.
func invalidAt(offsets ...int64) func(*fakeStrategy) {
	return func(s *fakeStrategy) {
		s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
			if pos, _ := m.Origin(); slices.Contains(offsets, pos.Offset) {
				return Invalid(m, errors.New("bad payload"))
			}
			s.accept(m)
			return s.commit(m.Committable, false)
		}
	}
}

func sizeOf(s string) int { return len(s) }

func TestInvalidMessagesGoToTheDLQ(t *testing.T) {
	rec := metricstest.NewRecorder()
	dlq := &fakeDLQ{}
	var reported atomic.Bool
	h := newHarness(t, Config[string]{
		CommitPolicy: ImmediateCommit(),
		Metrics:      rec,
		DLQ:          &DLQPolicy[string]{Producer: dlq, Size: sizeOf},
	}, func(s *fakeStrategy) {
		invalidAt(2)(s)
		// Offset 5 is accepted, then found invalid later (as an asynchronous step would).
		s.onPoll = func(s *fakeStrategy) error {
			if slices.Contains(s.payloads(), "t/0@5") && reported.CompareAndSwap(false, true) {
				return &InvalidMessageError{Partition: p0, Offset: 5, Reason: "late"}
			}
			return nil
		}
	})
	dlq.n = h.n
	h.consumer.produce(p0, 0, 10)
	h.start()
	h.consumer.assign(p0)
	h.waitUntil("offset 10 committed", func() bool { return h.consumer.committedOffset(p0) == 10 })
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if got := dlq.payloads(); !slices.Equal(got, []string{"t/0@2", "t/0@5"}) {
		t.Fatalf("dead-lettered %v, want the raw messages at offsets 2 and 5", got)
	}
	if r := dlq.reasons[1]; r.Partition != p0 || r.Offset != 5 || r.Reason != "late" {
		t.Errorf("second DLQ reason = %+v", r)
	}
	if got := rec.Counter("consumer.invalid_message.count"); got != 2 {
		t.Errorf("invalid_message.count = %d, want 2", got)
	}
	if n := h.proc.dlq.buffered(); n != 0 {
		t.Errorf("%d raw messages still buffered after everything was committed", n)
	}
}

func TestDLQLimitsDropWithoutStopping(t *testing.T) {
	cases := []struct {
		name    string
		policy  DLQPolicy[string]
		invalid []int64
		want    []string
		dropped int64
	}{
		{"consecutive", DLQPolicy[string]{MaxConsecutiveInvalid: 2}, []int64{3, 4, 5, 6, 8}, []string{"t/0@3", "t/0@4", "t/0@8"}, 2},
		// At offset 6, 3 invalid against 4 valid is above 0.5.
		{"ratio", DLQPolicy[string]{MaxInvalidRatio: 0.5}, []int64{4, 5, 6}, []string{"t/0@4", "t/0@5"}, 1},
		{"ratio with nothing valid yet", DLQPolicy[string]{MaxInvalidRatio: 0.5}, []int64{0}, nil, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := metricstest.NewRecorder()
			dlq := &fakeDLQ{}
			policy := tc.policy
			policy.Producer, policy.Size = dlq, sizeOf
			h := newHarness(t, Config[string]{CommitPolicy: ImmediateCommit(), Metrics: rec, DLQ: &policy}, invalidAt(tc.invalid...))
			h.consumer.produce(p0, 0, 10)
			h.start()
			h.consumer.assign(p0)
			h.waitUntil("offset 10 committed", func() bool { return h.consumer.committedOffset(p0) == 10 })
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			if got := dlq.payloads(); !slices.Equal(got, tc.want) {
				t.Errorf("dead-lettered %v, want %v", got, tc.want)
			}
			if got := rec.Counter("consumer.dlq.dropped_messages"); got != tc.dropped {
				t.Errorf("dlq.dropped_messages = %d, want %d", got, tc.dropped)
			}
		})
	}
}

func TestWithoutDLQInvalidMessagesAreSkipped(t *testing.T) {
	rec := metricstest.NewRecorder()
	h := newHarness(t, Config[string]{CommitPolicy: ImmediateCommit(), Metrics: rec}, invalidAt(1))
	h.consumer.produce(p0, 0, 3)
	h.start()
	h.consumer.assign(p0)
	h.waitUntil("offset 3 committed", func() bool { return h.consumer.committedOffset(p0) == 3 })
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if got := rec.Counter("consumer.invalid_message.count"); got != 1 {
		t.Errorf("invalid_message.count = %d, want 1", got)
	}
}

func TestDLQRefetchesEvictedMessages(t *testing.T) {
	cases := []struct {
		name      string
		hideFetch bool
		want      []string
		dropped   int64
		wantFetch int
	}{
		{"consumer can fetch", false, []string{"t/0@0"}, 0, 1},
		{"consumer cannot fetch", true, nil, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := metricstest.NewRecorder()
			dlq := &fakeDLQ{}
			var reported atomic.Bool
			// Payloads are 5 bytes: a 10-byte buffer keeps the last two messages.
			cfg := Config[string]{CommitPolicy: ImmediateCommit(), Metrics: rec,
				DLQ: &DLQPolicy[string]{Producer: dlq, Size: sizeOf, BufferBytesPerPartition: 10}}
			h := newHarness(t, cfg, func(s *fakeStrategy) {
				s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
					s.hold(m)
					return nil
				}
				s.onPoll = func(s *fakeStrategy) error {
					if len(s.payloads()) == 5 && reported.CompareAndSwap(false, true) {
						return &InvalidMessageError{Partition: p0, Offset: 0, Reason: "late"}
					}
					if reported.Load() {
						return s.release()
					}
					return nil
				}
			})
			if tc.hideFetch {
				p, err := New[string](struct{ Consumer[string] }{h.consumer}, h.factory, h.proc.cfg)
				if err != nil {
					t.Fatal(err)
				}
				h.proc = p
			}
			h.consumer.produce(p0, 0, 5)
			h.start()
			h.consumer.assign(p0)
			h.waitUntil("offset 5 committed", func() bool { return h.consumer.committedOffset(p0) == 5 })
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			if got := dlq.payloads(); !slices.Equal(got, tc.want) {
				t.Errorf("dead-lettered %v, want %v", got, tc.want)
			}
			if got := rec.Counter("consumer.dlq.dropped_messages"); got != tc.dropped {
				t.Errorf("dlq.dropped_messages = %d, want %d", got, tc.dropped)
			}
			if got := rec.Counter("consumer.dlq_buffer.exceeded"); got != 3 {
				t.Errorf("dlq_buffer.exceeded = %d, want 3 evictions", got)
			}
			if h.consumer.fetches != tc.wantFetch {
				t.Errorf("%d fetches, want %d", h.consumer.fetches, tc.wantFetch)
			}
		})
	}
}

func TestDLQProduceFailureIsCountedAndConsumptionGoesOn(t *testing.T) {
	rec := metricstest.NewRecorder()
	dlq := &fakeDLQ{err: errors.New("dlq broker down")}
	h := newHarness(t, Config[string]{CommitPolicy: ImmediateCommit(), Metrics: rec,
		DLQ: &DLQPolicy[string]{Producer: dlq, Size: sizeOf}}, invalidAt(1))
	h.consumer.produce(p0, 0, 4)
	h.start()
	h.consumer.assign(p0)
	h.waitUntil("offset 4 committed", func() bool { return h.consumer.committedOffset(p0) == 4 })
	if err := h.stop(); err != nil {
		t.Fatalf("Run = %v; a DLQ failure must not stop the consumer", err)
	}
	if got := rec.Counter("consumer.dlq.dropped_messages"); got != 1 {
		t.Errorf("dlq.dropped_messages = %d, want 1", got)
	}
}

func TestCommitWaitsForDLQDeliveries(t *testing.T) {
	dlq := &fakeDLQ{hold: true}
	h := newHarness(t, Config[string]{CommitPolicy: ImmediateCommit(),
		DLQ: &DLQPolicy[string]{Producer: dlq, Size: sizeOf}}, invalidAt(0))
	dlq.n = h.n
	phases := h.recordPhases()
	h.consumer.produce(p0, 0, 2)
	h.start()
	h.consumer.assign(p0)
	h.waitUntil("the loop to wait in the commit phase", func() bool {
		return len(dlq.pending()) == 1 && phases.current() == phaseCommit
	})
	if got := h.consumer.commitList(); len(got) != 0 {
		t.Fatalf("committed %v before the DLQ delivery of offset 0 was done", got)
	}
	dlq.pending()[0].Resolve(Position{}, nil)
	h.waitUntil("offset 2 committed", func() bool { return h.consumer.committedOffset(p0) == 2 })
}

func TestDLQBlocksOnTheOldestDeliveryWhenPendingIsFull(t *testing.T) {
	dlq := &fakeDLQ{hold: true}
	h := newHarness(t, Config[string]{CommitPolicy: CommitPolicy{MinInterval: time.Hour},
		DLQ: &DLQPolicy[string]{Producer: dlq, Size: sizeOf, MaxPendingPerPartition: 1}}, invalidAt(1, 2))
	dlq.n = h.n
	h.consumer.produce(p0, 0, 4)
	h.start()
	h.consumer.assign(p0)
	h.waitUntil("offset 2 offered and the first DLQ delivery pending", func() bool {
		if h.factory.count() == 0 || len(dlq.pending()) != 1 {
			return false
		}
		s := h.factory.strategy(t, 0)
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.attempts >= 3
	})
	if got := dlq.payloads(); len(got) != 1 {
		t.Fatalf("dead-lettered %v while the one pending delivery was not done, want only the first", got)
	}
	dlq.pending()[0].Resolve(Position{}, nil)
	h.waitUntil("the second invalid message dead-lettered", func() bool { return len(dlq.pending()) == 2 })
	dlq.pending()[1].Resolve(Position{}, nil)
	h.waitUntil("offset 4 submitted", func() bool { return slices.Contains(h.factory.strategy(t, 0).payloads(), "t/0@3") })
}
