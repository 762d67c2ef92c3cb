package integration

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
)

// The backlog is measured before the processor takes anything, grows while its
// partitions are paused (when no fetch reads them, so only the consumer's
// periodic ListOffsets sees the new messages), and drains to 0.
func TestConsumerLagGaugesMeasureTheBacklog(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		env := kafkatest.New(t)
		topic, group := env.Topic(2), env.Group()
		const first, more, committed = 100, 50, 20
		env.Fill(topic, 2, first, plain)
		// A previous owner of the partitions committed the first 20 of each.
		commitOffsets(t, env, group, topic, committed)

		n := &notifier{}
		s := newSeen(n)
		a := newApp(n, s)
		a.gate = &gate{closed: true}
		rec := metricstest.NewRecorder()
		m := startMember(t, b, env, topic, group, "", a, processor.Config[payload]{
			BackpressurePauseAfter: 100 * time.Millisecond,
			PausedPollTimeout:      20 * time.Millisecond,
			CommitPolicy:           processor.CommitPolicy{MinInterval: 100 * time.Millisecond},
			Metrics:                rec,
		})
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := rec.WaitCounter(ctx, "consumer.pause", 1); err != nil {
			t.Fatal(err)
		}
		// RunTask took one message before the gate rejected the next, and holds
		// it; nothing went past the gate, so nothing was committed.
		for p := range int32(2) {
			position := int64(committed + seenIn(s, p))
			waitLag(t, rec, "consumer.lag", topic, p, first-committed)
			waitLag(t, rec, "consumer.position_lag", topic, p, first-position)
		}

		env.Fill(topic, 2, more, plain)
		for p := range int32(2) {
			position := int64(committed + seenIn(s, p))
			waitLag(t, rec, "consumer.lag", topic, p, first+more-committed)
			waitLag(t, rec, "consumer.position_lag", topic, p, first+more-position)
		}

		a.gate.set(false)
		waitUntil(t, n, "the backlog processed", func() bool { return s.distinct() == 2*(first+more-committed) })
		for p := range int32(2) {
			waitLag(t, rec, "consumer.lag", topic, p, 0)
			waitLag(t, rec, "consumer.position_lag", topic, p, 0)
		}
		if err := m.stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		committedEqualsEnds(t, env, topic, group)
	})
}

// seenIn returns how many messages of partition p of the seen topic were processed.
func seenIn(s *seen, p int32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for pos := range s.counts {
		if pos.Partition.Index == p {
			n++
		}
	}
	return n
}

// waitLag waits until the lag gauge name of topic's partition p holds want. The
// processor sets it about once a second.
func waitLag(t *testing.T, rec *metricstest.Recorder, name, topic string, p int32, want int64) {
	t.Helper()
	tags := []metrics.Tag{{Key: "topic", Value: topic}, {Key: "partition", Value: strconv.Itoa(int(p))}}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	err := rec.Wait(ctx, func() bool {
		v, ok := rec.GaugeValue(name, tags...)
		return ok && v == float64(want)
	})
	if err != nil {
		v, ok := rec.GaugeValue(name, tags...)
		t.Fatalf("%s of partition %d: waited %v for %d; last value %v (ever set: %v)", name, p, waitFor, want, v, ok)
	}
}

// commitOffsets commits offset for every partition of topic in group, as a member
// that has left would have.
func commitOffsets(t *testing.T, env *kafkatest.Env, group, topic string, offset int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ends, err := env.Client.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var os kadm.Offsets
	for p := range ends {
		os.Add(kadm.Offset{Topic: topic, Partition: p, At: offset, LeaderEpoch: -1})
	}
	if err := kadm.NewClient(cl).CommitAllOffsets(ctx, group, os); err != nil {
		t.Fatalf("committing offset %d of %s for group %s: %v", offset, topic, group, err)
	}
}
