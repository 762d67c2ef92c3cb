package strategies

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// mustCloseWithin waits for ch to close and fails the test, naming what it waited
// for, if that takes longer than a few seconds.
func mustCloseWithin(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out after 5s waiting for %s", what)
	}
}

// taggedMetrics records counters under their name and tags, e.g.
// "producer.produce_status status=error".
type taggedMetrics struct{ *countMetrics }

func (m taggedMetrics) Increment(name string, v int64, tags ...metrics.Tag) {
	for _, t := range tags {
		name += " " + t.Key + "=" + t.Value
	}
	m.countMetrics.Increment(name, v)
}

// payloads returns the payloads of msgs, "-" for a filtered one.
func payloads(msgs []processor.Message[string]) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Payload
		if m.Filtered() {
			out[i] = "-"
		}
	}
	return out
}

func checkPayloads(t *testing.T, r *recorder[string], want ...string) {
	t.Helper()
	got := payloads(r.messages())
	if len(got) != len(want) {
		t.Fatalf("next step got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("next step got %q, want %q", got, want)
		}
	}
}

func newTestProduce(t *testing.T, maxPending int, opts ...ProduceOption) (*Produce[string], *kafkatest.MemoryProducer[string], *recorder[string]) {
	t.Helper()
	prod := kafkatest.NewMemoryProducer[string]()
	next := &recorder[string]{}
	s, err := NewProduce[string](prod, "out", next, maxPending, opts...)
	if err != nil {
		t.Fatalf("NewProduce: %v", err)
	}
	return s, prod, next
}

func submitAll(t *testing.T, s processor.Strategy[string], msgs ...processor.Message[string]) {
	t.Helper()
	for _, m := range msgs {
		if err := s.Submit(m); err != nil {
			t.Fatalf("Submit(%s) = %v, want nil", m.Committable, err)
		}
	}
}

func poll(t *testing.T, s processor.Strategy[string]) {
	t.Helper()
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v, want nil", err)
	}
}

func TestProduceForwardsOnlyAcknowledgedInOrder(t *testing.T) {
	s, prod, next := newTestProduce(t, 0)
	submitAll(t, s, brokerMsg("a", tp0, 0), brokerMsg("b", tp0, 1), brokerMsg("c", tp1, 0))
	if got := len(prod.Produced()); got != 3 {
		t.Fatalf("%d payloads produced on Submit, want 3", got)
	}

	poll(t, s)
	checkPayloads(t, next)

	prod.Ack(1) // b is done but a is not: nothing may overtake a.
	poll(t, s)
	checkPayloads(t, next)

	prod.Ack(0)
	poll(t, s)
	checkPayloads(t, next, "a", "b")

	prod.Ack(2)
	poll(t, s)
	checkPayloads(t, next, "a", "b", "c")
	checkCommittables(t, next.messages(),
		processor.CommittableOf(tp0, 1), processor.CommittableOf(tp0, 2), processor.CommittableOf(tp1, 1))
}

func TestProduceRejectsWhenFull(t *testing.T) {
	s, prod, next := newTestProduce(t, 2)
	submitAll(t, s, brokerMsg("a", tp0, 0), processor.NewFiltered[string](processor.CommittableOf(tp0, 2), time.Time{}))
	if err := s.Submit(brokerMsg("c", tp0, 2)); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("third Submit with maxPending 2 = %v, want ErrMessageRejected", err)
	}
	if got := len(prod.Produced()); got != 1 {
		t.Fatalf("%d payloads produced, want 1: a rejected one is not produced, a filtered one never", got)
	}

	prod.Ack(0)
	poll(t, s)
	checkPayloads(t, next, "a", "-")
	submitAll(t, s, brokerMsg("c", tp0, 2))
}

func TestProduceFilteredWaitsBehindPending(t *testing.T) {
	s, prod, next := newTestProduce(t, 0)
	submitAll(t, s,
		processor.NewFiltered[string](processor.CommittableOf(tp0, 1), time.Time{}),
		brokerMsg("b", tp0, 1),
		processor.NewFiltered[string](processor.CommittableOf(tp0, 3), time.Time{}),
	)
	poll(t, s)
	checkPayloads(t, next, "-") // the head filtered one has nothing to wait for

	prod.Ack(0)
	poll(t, s)
	checkPayloads(t, next, "-", "b", "-")
}

func TestProduceKeepsHeadWhenNextRejects(t *testing.T) {
	s, prod, next := newTestProduce(t, 0)
	submitAll(t, s, brokerMsg("a", tp0, 0), brokerMsg("b", tp0, 1))
	prod.AckAll()
	rejectTimes(next, 1)

	poll(t, s)
	checkPayloads(t, next)
	poll(t, s)
	checkPayloads(t, next, "a", "b")
}

func TestProduceDeliveryError(t *testing.T) {
	errBroker := errors.New("message too large")

	t.Run("fatal by default", func(t *testing.T) {
		s, prod, next := newTestProduce(t, 0)
		submitAll(t, s, brokerMsg("a", tp0, 0))
		prod.Fail(0, errBroker)
		if err := s.Poll(); !errors.Is(err, errBroker) {
			t.Fatalf("Poll = %v, want an error wrapping %v", err, errBroker)
		}
		checkPayloads(t, next)
	})

	t.Run("skipped", func(t *testing.T) {
		m := taggedMetrics{newCountMetrics()}
		core, logs := observer.New(zap.WarnLevel)
		s, prod, next := newTestProduce(t, 0, WithFailedDeliveriesSkipped(), WithMetrics(m), WithLogger(zap.New(core)))
		submitAll(t, s, brokerMsg("a", tp0, 0), brokerMsg("b", tp0, 1))
		prod.Fail(0, errBroker)
		prod.Ack(1)
		rejectTimes(next, 1) // the retry must not report the failure twice
		poll(t, s)
		poll(t, s)
		checkPayloads(t, next, "a", "b")
		// The producer counts every delivery it resolves; Produce counting the
		// failure too would count it twice.
		if got := m.counter("producer.produce_status status=error"); got != 0 {
			t.Fatalf("Produce counted producer.produce_status status=error %d times, want 0: the producer counts it", got)
		}
		if got := logs.FilterMessage("delivery failed; message skipped").Len(); got != 1 {
			t.Fatalf("skipped delivery logged %d times, want 1", got)
		}
	})

	t.Run("in Join", func(t *testing.T) {
		s, prod, next := newTestProduce(t, 0)
		submitAll(t, s, brokerMsg("a", tp0, 0), brokerMsg("b", tp0, 1))
		prod.Fail(0, errBroker)
		prod.Ack(1)
		if err := s.Join(context.Background()); !errors.Is(err, errBroker) {
			t.Fatalf("Join = %v, want an error wrapping %v", err, errBroker)
		}
		checkPayloads(t, next)
		checkJoined(t, next)
	})
}

func TestProduceJoinWaitsForOutstanding(t *testing.T) {
	s, prod, next := newTestProduce(t, 0)
	submitAll(t, s, brokerMsg("a", tp0, 0), processor.NewFiltered[string](processor.CommittableOf(tp0, 2), time.Time{}), brokerMsg("c", tp0, 2))

	joined := make(chan struct{})
	var joinErr error
	go func() {
		defer close(joined)
		joinErr = s.Join(context.Background())
	}()
	prod.Ack(1)
	prod.Ack(0)
	mustCloseWithin(t, joined, "Join after both deliveries were acknowledged")
	if joinErr != nil {
		t.Fatalf("Join = %v", joinErr)
	}
	checkPayloads(t, next, "a", "-", "c")
	checkJoined(t, next)
}

func TestProduceJoinRetriesRejections(t *testing.T) {
	s, prod, next := newTestProduce(t, 0)
	submitAll(t, s, brokerMsg("a", tp0, 0))
	prod.AckAll()
	rejectTimes(next, 3)
	if err := s.Join(context.Background()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	checkPayloads(t, next, "a")
	checkJoined(t, next)
}

func TestProduceJoinAbandonsWhenOutOfTime(t *testing.T) {
	s, prod, next := newTestProduce(t, 0)
	submitAll(t, s, brokerMsg("a", tp0, 0), brokerMsg("b", tp0, 1), brokerMsg("c", tp0, 2))
	prod.Ack(0)
	prod.Ack(2)
	if err := s.Join(doneCtx()); err != nil {
		t.Fatalf("Join = %v, want nil: running out of time is not an error", err)
	}
	// a was acknowledged and goes on; b is not, so neither b nor c may be committed.
	checkPayloads(t, next, "a")
	checkJoined(t, next)
}

func TestProduceTerminate(t *testing.T) {
	s, prod, next := newTestProduce(t, 0)
	submitAll(t, s, brokerMsg("a", tp0, 0))
	s.Terminate()
	prod.AckAll()
	poll(t, s)
	checkPayloads(t, next)
	if !next.terminated {
		t.Fatal("next step not terminated")
	}
	// The producer's context is cancelled, so nothing waits on it any more.
	if err := s.ctx.Err(); !errors.Is(err, context.Canceled) {
		t.Fatalf("producer context error = %v, want context.Canceled", err)
	}
}

func TestProduceKeepsOrderAcrossQueueReuse(t *testing.T) {
	// A queue that never empties exercises the compaction of its array.
	s, prod, next := newTestProduce(t, 3)
	var want []string
	for i := range 50 {
		v := string(rune('A' + i%26))
		want = append(want, v)
		submitAll(t, s, brokerMsg(v, tp0, int64(i)))
		if i >= 2 {
			prod.Ack(i - 2)
			poll(t, s)
		}
	}
	prod.AckAll()
	poll(t, s)
	checkPayloads(t, next, want...)
	if n := s.pending.Cap(); n > 8 {
		t.Fatalf("queue array grew to %d entries for at most 3 pending, want it reused", n)
	}
}

func TestNewProduceValidates(t *testing.T) {
	prod := kafkatest.NewMemoryProducer[string]()
	next := &recorder[string]{}
	tests := []struct {
		name       string
		producer   Producer[string]
		topic      string
		next       processor.Strategy[string]
		maxPending int
	}{
		{"nil producer", nil, "out", next, 0},
		{"nil next", prod, "out", nil, 0},
		{"empty topic", prod, "", next, 0},
		{"negative maxPending", prod, "out", next, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewProduce(tt.producer, tt.topic, tt.next, tt.maxPending); err == nil {
				t.Fatal("NewProduce succeeded, want an error")
			}
		})
	}
	s, err := NewProduce[string](prod, "out", next, 0)
	if err != nil {
		t.Fatalf("NewProduce(maxPending 0) = %v", err)
	}
	if s.maxPending != DefaultMaxPendingDeliveries {
		t.Fatalf("maxPending 0 gives a bound of %d, want the default %d", s.maxPending, DefaultMaxPendingDeliveries)
	}
}
