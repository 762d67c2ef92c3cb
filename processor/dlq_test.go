package processor_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
)

// fakeDLQ records what is dead-lettered. Deliveries resolve at once unless hold is
// set, and fail with err when it is set.
type fakeDLQ struct {
	n *processortest.Events

	mu         sync.Mutex
	produced   []processor.Message[string]
	reasons    []*processor.InvalidMessageError
	deliveries []*processor.Delivery
	hold       bool
	err        error
}

func (f *fakeDLQ) Produce(ctx context.Context, m processor.Message[string], inv *processor.InvalidMessageError) *processor.Delivery {
	f.mu.Lock()
	d := processor.NewDelivery()
	f.produced = append(f.produced, m)
	f.reasons = append(f.reasons, inv)
	f.deliveries = append(f.deliveries, d)
	if !f.hold {
		d.Resolve(processor.Position{}, f.err)
	}
	f.mu.Unlock()
	if f.n != nil {
		f.n.Notify()
	}
	return d
}

func (f *fakeDLQ) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
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

func (f *fakeDLQ) pending() []*processor.Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deliveries)
}

// invalidAt returns a setup under which the strategy reports the given offsets of p0
// invalid from Submit and accepts and stages the rest.
func invalidAt(offsets ...int64) func(*processortest.Strategy[string]) {
	return func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			if pos, _ := m.Origin(); slices.Contains(offsets, pos.Offset) {
				return processor.Invalid(m, errors.New("bad payload"))
			}
			s.Accept(m)
			return s.Commit(m.Committable, false)
		}
	}
}

func sizeOf(s string) int { return len(s) }

func TestInvalidMessagesGoToTheDLQ(t *testing.T) {
	rec := metricstest.NewRecorder()
	dlq := &fakeDLQ{}
	var reported atomic.Bool
	h := newHarness(t, processor.Config[string]{
		CommitPolicy: processor.ImmediateCommit(),
		Metrics:      rec,
		DLQ:          &processor.DLQPolicy[string]{Producer: dlq, Size: sizeOf},
	}, func(s *processortest.Strategy[string]) {
		invalidAt(2)(s)
		// Offset 5 is accepted, then found invalid later (as an asynchronous step would).
		s.OnPoll = func(s *processortest.Strategy[string]) error {
			if slices.Contains(s.Payloads(), "t/0@5") && reported.CompareAndSwap(false, true) {
				return &processor.InvalidMessageError{Partition: p0, Offset: 5, Reason: "late"}
			}
			return nil
		}
	})
	dlq.n = h.Events
	h.produce(p0, 0, 10)
	h.Start()
	h.Consumer.Assign(p0)
	// The strategy is polled once per run, so the late report of offset 5 may
	// come after offset 10 is committed.
	h.WaitUntil("offset 10 committed and two messages dead-lettered", func() bool {
		return h.Consumer.Committed(p0) == 10 && len(dlq.payloads()) == 2
	})
	if err := h.Stop(); err != nil {
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
	if n := processor.DLQBuffered(h.Processor); n != 0 {
		t.Errorf("%d raw messages still buffered after everything was committed", n)
	}
}

func TestDLQLimitsFailTheProcessor(t *testing.T) {
	cases := []struct {
		name    string
		policy  processor.DLQPolicy[string]
		invalid []int64
		want    []string
		// over is the offset of the first message past the limit: nothing at or
		// past it may be committed.
		over  int64
		limit string
	}{
		{"consecutive", processor.DLQPolicy[string]{MaxConsecutiveInvalid: 2}, []int64{3, 4, 5, 6, 8}, []string{"t/0@3", "t/0@4"}, 5, "more than 2 consecutive"},
		// At offset 6, 3 invalid against 4 valid is above 0.5.
		{"ratio", processor.DLQPolicy[string]{MaxInvalidRatio: 0.5}, []int64{4, 5, 6}, []string{"t/0@4", "t/0@5"}, 6, "ratio above 0.5"},
		{"ratio with nothing valid yet", processor.DLQPolicy[string]{MaxInvalidRatio: 0.5}, []int64{0}, nil, 0, "ratio above 0.5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dlq := &fakeDLQ{}
			policy := tc.policy
			policy.Producer, policy.Size = dlq, sizeOf
			h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit(), DLQ: &policy}, invalidAt(tc.invalid...))
			h.produce(p0, 0, 10)
			h.Start()
			h.Consumer.Assign(p0)
			err := h.Wait()
			if !errors.Is(err, processor.ErrDLQLimit) || !strings.Contains(err.Error(), tc.limit) {
				t.Fatalf("Run = %v, want an error wrapping ErrDLQLimit that says %q", err, tc.limit)
			}
			if got := dlq.payloads(); !slices.Equal(got, tc.want) {
				t.Errorf("dead-lettered %v, want %v", got, tc.want)
			}
			if got := h.Consumer.Committed(p0); got > tc.over {
				t.Errorf("committed %d, past the message at %d that exceeded the limit", got, tc.over)
			}
		})
	}
}

func TestWithoutDLQInvalidMessagesAreSkipped(t *testing.T) {
	rec := metricstest.NewRecorder()
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit(), Metrics: rec}, invalidAt(1))
	h.produce(p0, 0, 3)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("offset 3 committed", func() bool { return h.Consumer.Committed(p0) == 3 })
	if err := h.Stop(); err != nil {
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
		// Given up after GiveUpAfter with DLQSkip: dropped and committed past.
		{"consumer cannot fetch", true, nil, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := metricstest.NewRecorder()
			dlq := &fakeDLQ{}
			var reported atomic.Bool
			// Payloads are 5 bytes: a 10-byte buffer keeps the last two messages.
			cfg := processor.Config[string]{CommitPolicy: processor.ImmediateCommit(), Metrics: rec,
				DLQ: &processor.DLQPolicy[string]{Producer: dlq, Size: sizeOf, BufferBytesPerPartition: 10,
					RetryBackoff: 5 * time.Millisecond, GiveUpAfter: 20 * time.Millisecond, OnGiveUp: processor.DLQSkip}}
			h := newHarness(t, cfg, func(s *processortest.Strategy[string]) {
				s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
					s.Hold(m)
					return nil
				}
				s.OnPoll = func(s *processortest.Strategy[string]) error {
					if len(s.Payloads()) == 5 && reported.CompareAndSwap(false, true) {
						return &processor.InvalidMessageError{Partition: p0, Offset: 0, Reason: "late"}
					}
					if reported.Load() {
						return s.Release()
					}
					return nil
				}
			})
			if tc.hideFetch {
				p, err := processor.New[string](struct{ processor.Consumer[string] }{h.Consumer}, h.factory, h.Config)
				if err != nil {
					t.Fatal(err)
				}
				h.Processor = p
			}
			h.produce(p0, 0, 5)
			h.Start()
			h.Consumer.Assign(p0)
			h.WaitUntil("offset 5 committed", func() bool { return h.Consumer.Committed(p0) == 5 })
			if err := h.Stop(); err != nil {
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
			if h.Consumer.Fetches() != tc.wantFetch {
				t.Errorf("%d fetches, want %d", h.Consumer.Fetches(), tc.wantFetch)
			}
		})
	}
}

// TestDLQOutageLosesNothing: while DLQ deliveries fail, the invalid message's
// partition is paused and nothing at or past it is committed; once the DLQ is back
// the message reaches it and the offsets move on.
func TestDLQOutageLosesNothing(t *testing.T) {
	rec := metricstest.NewRecorder()
	dlq := &fakeDLQ{err: errors.New("dlq broker down")}
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit(), Metrics: rec,
		DLQ: &processor.DLQPolicy[string]{Producer: dlq, Size: sizeOf, RetryBackoff: 5 * time.Millisecond, MaxRetryBackoff: 20 * time.Millisecond}}, invalidAt(1))
	dlq.n = h.Events
	h.produce(p0, 0, 4)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("three failed deliveries", func() bool { return len(dlq.payloads()) >= 3 })
	if got := h.Consumer.Committed(p0); got > 1 {
		t.Fatalf("committed %d while the invalid message at offset 1 was not in the DLQ", got)
	}
	if got := h.Consumer.Paused(); !slices.Equal(got, []processor.Partition{p0}) {
		t.Errorf("paused %v while the DLQ fails, want [%v]", got, p0)
	}
	dlq.setErr(nil)
	h.WaitUntil("offset 4 committed", func() bool { return h.Consumer.Committed(p0) == 4 })
	h.WaitUntil("the partition resumed", func() bool { return len(h.Consumer.Paused()) == 0 })
	if err := h.Stop(); err != nil {
		t.Fatalf("Run = %v; a DLQ outage must not stop the consumer", err)
	}
	if got := rec.Counter("consumer.dlq.dropped_messages"); got != 0 {
		t.Errorf("dlq.dropped_messages = %d, want 0", got)
	}
	if got := rec.Counter("consumer.dlq.failed_deliveries"); got < 3 {
		t.Errorf("dlq.failed_deliveries = %d, want at least the 3 seen", got)
	}
}

// TestDLQRetriesWithoutTraffic: a failed delivery is retried, and the commit held
// for it made, while nothing else arrives and the poll timeout is an hour: the loop
// comes round for the deliveries instead of waiting a whole PollTimeout each time.
func TestDLQRetriesWithoutTraffic(t *testing.T) {
	dlq := &fakeDLQ{err: errors.New("dlq broker down")}
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit(), PollTimeout: time.Hour,
		DLQ: &processor.DLQPolicy[string]{Producer: dlq, Size: sizeOf, RetryBackoff: 5 * time.Millisecond, MaxRetryBackoff: 20 * time.Millisecond}}, invalidAt(1))
	dlq.n = h.Events
	h.produce(p0, 0, 2)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("two failed deliveries", func() bool { return len(dlq.payloads()) >= 2 })
	dlq.setErr(nil)
	h.WaitUntil("offset 2 committed once the DLQ takes the message", func() bool { return h.Consumer.Committed(p0) == 2 })
	if err := h.Stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

func TestDLQGiveUp(t *testing.T) {
	cases := []struct {
		name     string
		onGiveUp processor.DLQGiveUp
		wantErr  error
		// committed is what is committed in the end.
		committed int64
		dropped   int64
	}{
		{"skip", processor.DLQSkip, nil, 4, 1},
		{"fail", processor.DLQFail, processor.ErrDLQGaveUp, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := metricstest.NewRecorder()
			dlq := &fakeDLQ{err: errors.New("dlq broker down")}
			h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit(), Metrics: rec,
				DLQ: &processor.DLQPolicy[string]{Producer: dlq, Size: sizeOf, RetryBackoff: 5 * time.Millisecond,
					GiveUpAfter: 30 * time.Millisecond, OnGiveUp: tc.onGiveUp}}, invalidAt(1))
			h.produce(p0, 0, 4)
			h.Start()
			h.Consumer.Assign(p0)
			var err error
			if tc.wantErr != nil {
				err = h.Wait()
			} else {
				h.WaitUntil("offset 4 committed", func() bool { return h.Consumer.Committed(p0) == 4 })
				err = h.Stop()
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil && !strings.Contains(err.Error(), "offset 1")) {
				t.Fatalf("Run = %v, want %v naming offset 1", err, tc.wantErr)
			}
			if got := h.Consumer.Committed(p0); got != tc.committed {
				t.Errorf("committed %d, want %d", got, tc.committed)
			}
			if got := rec.Counter("consumer.dlq.dropped_messages"); got != tc.dropped {
				t.Errorf("dlq.dropped_messages = %d, want %d", got, tc.dropped)
			}
		})
	}
}

// TestCommitHoldsBelowDLQDeliveries: a commit never passes a DLQ delivery that is
// not done, and does not wait for it either: the loop goes on, and a later commit
// takes the rest once it is.
func TestCommitHoldsBelowDLQDeliveries(t *testing.T) {
	dlq := &fakeDLQ{hold: true}
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit(),
		DLQ: &processor.DLQPolicy[string]{Producer: dlq, Size: sizeOf}}, invalidAt(0))
	dlq.n = h.Events
	h.produce(p0, 0, 2)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("offset 1 submitted and its delivery pending", func() bool {
		return len(dlq.pending()) == 1 && len(h.factory.Strategy(t, 0).Payloads()) == 1
	})
	h.produce(p0, 2, 1)
	h.WaitUntil("the loop to go on while the delivery is pending", func() bool {
		return len(h.factory.Strategy(t, 0).Payloads()) == 2
	})
	for _, c := range h.Consumer.Commits() {
		if c[p0] > 0 {
			t.Fatalf("committed %v before the DLQ delivery of offset 0 was done", c)
		}
	}
	dlq.pending()[0].Resolve(processor.Position{}, nil)
	h.WaitUntil("offset 3 committed", func() bool { return h.Consumer.Committed(p0) == 3 })
}

func TestDLQBlocksOnTheOldestDeliveryWhenPendingIsFull(t *testing.T) {
	dlq := &fakeDLQ{hold: true}
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.CommitPolicy{MinInterval: time.Hour},
		DLQ: &processor.DLQPolicy[string]{Producer: dlq, Size: sizeOf, MaxPendingPerPartition: 1}}, invalidAt(1, 2))
	dlq.n = h.Events
	h.produce(p0, 0, 4)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("offset 2 offered and the first DLQ delivery pending", func() bool {
		if h.factory.Count() == 0 || len(dlq.pending()) != 1 {
			return false
		}
		s := h.factory.Strategy(t, 0)
		return s.Attempts() >= 3
	})
	if got := dlq.payloads(); len(got) != 1 {
		t.Fatalf("dead-lettered %v while the one pending delivery was not done, want only the first", got)
	}
	dlq.pending()[0].Resolve(processor.Position{}, nil)
	h.WaitUntil("the second invalid message dead-lettered", func() bool { return len(dlq.pending()) == 2 })
	dlq.pending()[1].Resolve(processor.Position{}, nil)
	h.WaitUntil("offset 4 submitted", func() bool { return slices.Contains(h.factory.Strategy(t, 0).Payloads(), "t/0@3") })
}

// TestInvalidMessagesAtTheEndAreCommitted: nothing after them carries their offsets
// forward, so the processor stages past them itself once what came before is done
// (or they are the first polled), with and without a DLQ.
func TestInvalidMessagesAtTheEndAreCommitted(t *testing.T) {
	cases := []struct {
		name    string
		invalid []int64
		dlq     bool
	}{
		{"last with DLQ", []int64{3}, true},
		{"last two without DLQ", []int64{2, 3}, false},
		{"all with DLQ", []int64{0, 1, 2, 3}, true},
		{"first and last with DLQ", []int64{0, 3}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := processor.Config[string]{CommitPolicy: processor.ImmediateCommit()}
			dlq := &fakeDLQ{}
			if tc.dlq {
				cfg.DLQ = &processor.DLQPolicy[string]{Producer: dlq, Size: sizeOf}
			}
			h := newHarness(t, cfg, invalidAt(tc.invalid...))
			h.produce(p0, 0, 4)
			h.Start()
			h.Consumer.Assign(p0)
			h.WaitUntil("offset 4 committed", func() bool { return h.Consumer.Committed(p0) == 4 })
			if err := h.Stop(); err != nil {
				t.Fatal(err)
			}
			if got := len(dlq.payloads()); tc.dlq && got != len(tc.invalid) {
				t.Errorf("%d dead-lettered, want %d", got, len(tc.invalid))
			}
		})
	}
}

// TestDLQOversizedMessageKeepsTheBuffer: a message larger than the whole buffer is
// not kept, and does not push out the messages kept before it, so that invalid
// messages reported after it are sent from the buffer and not read again from the
// broker (where each read costs a round trip and, next to a large message, reading
// it again).
func TestDLQOversizedMessageKeepsTheBuffer(t *testing.T) {
	rec := metricstest.NewRecorder()
	dlq := &fakeDLQ{}
	var reported int
	cfg := processor.Config[string]{CommitPolicy: processor.ImmediateCommit(), Metrics: rec,
		DLQ: &processor.DLQPolicy[string]{Producer: dlq, Size: sizeOf, BufferBytesPerPartition: 16}}
	h := newHarness(t, cfg, func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			s.Hold(m)
			return nil
		}
		// Offsets 0 and 1 are found invalid only once all four are in, as a
		// strategy working in batches or on other goroutines reports them.
		s.OnPoll = func(s *processortest.Strategy[string]) error {
			if len(s.Payloads()) < 4 {
				return nil
			}
			if reported < 2 {
				reported++
				return &processor.InvalidMessageError{Partition: p0, Offset: int64(reported - 1), Reason: "late"}
			}
			return s.Release()
		}
	})
	h.Consumer.Produce(p0, "bad-0", "bad-1", strings.Repeat("x", 17), "ok-3")
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("offset 4 committed", func() bool { return h.Consumer.Committed(p0) == 4 })
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := dlq.payloads(), []string{"bad-0", "bad-1"}; !slices.Equal(got, want) {
		t.Errorf("dead-lettered %v, want %v", got, want)
	}
	if n := h.Consumer.Fetches(); n != 0 {
		t.Errorf("%d messages read again; want none, both invalid ones were in the buffer", n)
	}
	if got := rec.Counter("consumer.dlq_buffer.exceeded"); got != 1 {
		t.Errorf("dlq_buffer.exceeded = %d, want 1 (the oversized message alone)", got)
	}
}
