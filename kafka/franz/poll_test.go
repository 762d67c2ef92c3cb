package franz_test

import (
	"context"
	"testing"
	"time"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

// TestPollRunRunsStayIntactUntilTheNextPoll reads more messages than the
// reader's converted batches and the slices it recycles can hold at once, so
// that every slice is handed out, given back and filled again. Each run must hold
// its own messages until the next PollRun, whatever the caller wrote into the
// one before, and every offset must come once, in order.
func TestPollRunRunsStayIntactUntilTheNextPoll(t *testing.T) {
	const perPartition = 20000
	env := kafkatest.New(t)
	topic, group := env.Topic(2), env.Group()
	l := subscribe(t, newConsumer(t, env, group, ""), topic)
	l.until("the assignment", func() bool { return len(l.c.Assignment()) == 2 })
	env.Fill(topic, 2, perPartition, plain)

	check := func(run []processor.Message[payload], when string) {
		t.Helper()
		for _, m := range run {
			pos, ok := m.Origin()
			if !ok {
				t.Fatalf("%s: a message without an origin: %+v", when, m)
			}
			if want := plain(pos.Partition.Index, int(pos.Offset)); string(m.Payload.Value) != want {
				t.Fatalf("%s: message at %v holds %q, want %q", when, pos, m.Payload.Value, want)
			}
		}
	}
	into := make([]processor.Message[payload], 0, 256)
	next := map[int32]int64{0: 0, 1: 0}
	var prev []processor.Message[payload]
	deadline := time.Now().Add(waitFor)
	for next[0] < perPartition || next[1] < perPartition {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s with offsets up to %v of %d a partition", waitFor, next, perPartition)
		}
		check(prev, "the last run, before the next PollRun")
		// As a step mapping payloads in place does (processor.RunSubmitter).
		for i := range prev {
			prev[i].Payload = payload{Value: []byte("mapped")}
		}
		run, err := l.c.PollRun(context.Background(), 20*time.Millisecond, into[:0])
		if err != nil {
			t.Fatalf("PollRun: %v", err)
		}
		if len(run) > cap(into) {
			t.Fatalf("PollRun returned %d messages, more than cap(into) = %d", len(run), cap(into))
		}
		check(run, "a run as PollRun returned it")
		for _, m := range run {
			pos, _ := m.Origin()
			if first, _ := run[0].Origin(); pos.Partition != first.Partition {
				t.Fatalf("a run mixes partitions: %v and %v", first.Partition, pos.Partition)
			}
			if pos.Offset != next[pos.Partition.Index] {
				t.Fatalf("partition %d gave offset %d, want %d: each offset once, in order", pos.Partition.Index, pos.Offset, next[pos.Partition.Index])
			}
			next[pos.Partition.Index]++
		}
		prev = run
	}
}
