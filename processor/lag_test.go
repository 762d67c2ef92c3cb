package processor_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
)

func lagTags(p processor.Partition) []metrics.Tag {
	return []metrics.Tag{{Key: "topic", Value: p.Topic}, {Key: "partition", Value: strconv.Itoa(int(p.Index))}}
}

// waitGauge waits until the gauge name of partition p holds want. The gauges are
// set about once a second, so this waits a second or two.
func waitGauge(t *testing.T, rec *metricstest.Recorder, name string, p processor.Partition, want float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), processortest.WaitTimeout)
	defer cancel()
	tags := lagTags(p)
	err := rec.Wait(ctx, func() bool {
		v, ok := rec.GaugeValue(name, tags...)
		return ok && v == want
	})
	if err != nil {
		v, ok := rec.GaugeValue(name, tags...)
		t.Fatalf("%s of %s: waited for %v; last value %v (ever set: %v): %v", name, p, want, v, ok, err)
	}
}

func gaugeUnset(t *testing.T, rec *metricstest.Recorder, name string, p processor.Partition) {
	t.Helper()
	if v, ok := rec.GaugeValue(name, lagTags(p)...); ok {
		t.Errorf("%s of %s is set (to %v), want it unset", name, p, v)
	}
}

// The fake consumer's high watermark of a partition is its next offset; its
// committed offsets are the group's.
func TestLagGaugesAreHighWatermarkMinusCommittedAndMinusPosition(t *testing.T) {
	p2 := processor.Partition{Topic: "t", Index: 2}
	rec := metricstest.NewRecorder()
	h := newHarness(t, processor.Config[string]{
		Metrics:                rec,
		CommitPolicy:           processor.ImmediateCommit(),
		BackpressurePauseAfter: 50 * time.Millisecond,
		JoinTimeout:            50 * time.Millisecond,
	}, func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			pos, _ := m.Origin()
			switch {
			case pos.Partition != p0:
				// p1 and p2 are never taken: their first message is carried
				// until the partitions are paused.
				return processor.ErrMessageRejected
			case pos.Offset < 4:
				s.Accept(m)
				return s.Commit(m.Committable, false)
			}
			// Submitted, not committed.
			s.Hold(m)
			return nil
		}
	})
	// A previous owner committed p1 up to 2; nobody committed p2.
	if err := h.Consumer.Commit(context.Background(), map[processor.Partition]int64{p1: 2}); err != nil {
		t.Fatal(err)
	}
	h.produce(p0, 0, 10)
	h.produce(p1, 0, 10)
	h.produce(p2, 0, 10)
	h.Start()
	h.Await(h.Consumer.Assign(p0, p1, p2), "the assignment")

	// p0: committed 4, submitted up to 10.
	waitGauge(t, rec, "consumer.lag", p0, 6)
	waitGauge(t, rec, "consumer.position_lag", p0, 0)
	// p1: nothing submitted, so the position is the group's committed offset.
	waitGauge(t, rec, "consumer.lag", p1, 8)
	waitGauge(t, rec, "consumer.position_lag", p1, 8)

	// Paused, the partitions are still measured as they grow.
	ctx, cancel := context.WithTimeout(context.Background(), processortest.WaitTimeout)
	defer cancel()
	if err := rec.WaitCounter(ctx, "consumer.pause", 1); err != nil {
		t.Fatal(err)
	}
	h.produce(p1, 10, 5)
	waitGauge(t, rec, "consumer.lag", p1, 13)
	waitGauge(t, rec, "consumer.position_lag", p1, 13)
	// Set in the same passes as p1's 8, flushed before its 13: a value for p2
	// would be here by now.
	gaugeUnset(t, rec, "consumer.lag", p2)
	gaugeUnset(t, rec, "consumer.position_lag", p2)

	// Revoked, p0 is no longer reported, although the consumer still knows it, and
	// its series are dropped, so a backend that keeps them does not show stale lag.
	h.Await(h.Consumer.Revoke(p0), "the revocation of p0")
	gaugeUnset(t, rec, "consumer.lag", p0)
	gaugeUnset(t, rec, "consumer.position_lag", p0)
	h.produce(p0, 10, 5)
	h.produce(p1, 15, 1)
	waitGauge(t, rec, "consumer.lag", p1, 14)
	// One flush later, everything set in the pass that saw p1 at 14 is flushed.
	h.produce(p1, 16, 1)
	waitGauge(t, rec, "consumer.lag", p1, 15)
	gaugeUnset(t, rec, "consumer.lag", p0)
	gaugeUnset(t, rec, "consumer.position_lag", p0)

	if err := h.Stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestLagGaugesReachZeroWhenEverythingIsCommitted(t *testing.T) {
	rec := metricstest.NewRecorder()
	h := newHarness(t, processor.Config[string]{Metrics: rec, CommitPolicy: processor.ImmediateCommit()}, nil)
	h.produce(p0, 0, 50)
	h.produce(p1, 0, 30)
	h.Start()
	h.Await(h.Consumer.Assign(p0, p1), "the assignment")
	h.WaitUntil("everything committed", func() bool {
		return h.Consumer.Committed(p0) == 50 && h.Consumer.Committed(p1) == 30
	})
	for _, p := range []processor.Partition{p0, p1} {
		waitGauge(t, rec, "consumer.lag", p, 0)
		waitGauge(t, rec, "consumer.position_lag", p, 0)
	}
	if err := h.Stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
