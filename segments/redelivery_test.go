package segments

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
)

// A consumer stops after segment a (a, b -> a, c -> b) came out but before the
// batch holding c was committed, since that batch also wrote into a fragment still
// waiting for its timeout. Its successor reads c again: c must not come out a
// second time, in a fragment under b.
func TestSpanReadAgainAfterItsFlushComesOutOnce(t *testing.T) {
	env := kafkatest.New(t)
	in, out := env.Topic(1), env.Topic(1)
	client, _ := flusherRedis(t)
	ctx := env.Context(120 * time.Second)
	group := env.Group()
	trace, other := hexID(0x100, 32), hexID(0x200, 32)
	a, b, c := hexID(0xa, 16), hexID(0xb, 16), hexID(0xc, 16)
	x, y := hexID(0x1, 16), hexID(0x2, 16) // x -> y; y never comes

	newConsumer := func(rec *metricstest.Recorder) *Consumer {
		flusher := fastConfig(nil)
		flusher.Producer, flusher.Topic = nil, ""
		cons, err := NewConsumer(ConsumerConfig{
			Brokers: env.Brokers, Group: group,
			InputTopic: in, OutputTopic: out,
			Redis: client,
			// x's fragment waits Timeout, long past a's flush: the first consumer
			// stops in between.
			Buffer:    store.Config{RootTimeout: time.Second, Timeout: 6 * time.Second},
			Flusher:   flusher,
			BatchTime: 20 * time.Millisecond,
			Metrics:   rec,
			Processor: processor.Config[processor.KafkaPayload]{CommitPolicy: processor.ImmediateCommit()},
		})
		if err != nil {
			t.Fatalf("NewConsumer: %v", err)
		}
		return cons
	}
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		for _, r := range recs {
			r.Topic = in
		}
		if err := env.Client.Produce(ctx, recs...); err != nil {
			t.Fatal(err)
		}
	}

	// The first consumer: a and b in one batch, c and x in the next.
	rec1 := metricstest.NewRecorder()
	stop1 := startConsumer(t, ctx, newConsumer(rec1))
	produce(&kgo.Record{Value: spanJSON(trace, a, "")}, &kgo.Record{Value: spanJSON(trace, b, a)})
	waitMetric(t, rec1, "a and b to be in Redis", 30*time.Second, func() bool {
		return rec1.Counter("spans.buffer.process_spans.count") >= 2
	})
	produce(&kgo.Record{Value: spanJSON(trace, c, b)}, &kgo.Record{Value: spanJSON(other, x, y)})
	first, err := env.Client.Read(ctx, out, 1)
	if err != nil {
		t.Fatalf("reading segment a: %v", err)
	}
	stop1()
	if got := segmentSpans(t, first[0].Value); !slices.Equal(got[a], []string{a, b, c}) || len(got) != 1 {
		t.Fatalf("the first segment holds %v, want segment %s of a, b and c", got, a)
	}
	committed, err := env.Client.CommittedOffsets(ctx, group, in)
	if err != nil {
		t.Fatal(err)
	}
	if committed[0] != 2 {
		t.Fatalf("the first consumer committed offset %d, want 2 (a and b; c's batch waits for x's fragment): a very slow machine?", committed[0])
	}

	// Its successor reads c and x again.
	rec2 := metricstest.NewRecorder()
	stop2 := startConsumer(t, ctx, newConsumer(rec2))
	waitMetric(t, rec2, "x's fragment to be produced", 60*time.Second, func() bool {
		return rec2.Counter("spans.buffer.flusher.produced_segments") >= 1
	})
	stop2()

	ends, err := env.Client.EndOffsets(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := env.Client.Read(ctx, out, int(ends[0]))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string][]string) // span id -> the segments it came out in
	for _, m := range msgs {
		for root, ids := range segmentSpans(t, m.Value) {
			for _, id := range ids {
				seen[id] = append(seen[id], root)
			}
		}
	}
	if !slices.Equal(seen[c], []string{a}) {
		t.Errorf("c came out in segments %v, want once, in %s", seen[c], a)
	}
	if !slices.Equal(seen[x], []string{y}) {
		t.Errorf("x came out in segments %v, want once, in its fragment %s", seen[x], y)
	}
	if n := rec2.Counter("spans.buffer.process_spans.redelivered"); n != 1 {
		t.Errorf("spans.buffer.process_spans.redelivered = %d, want 1 (c)", n)
	}
	if n := queuedSegments(t, client, group+":"+in); n != 0 {
		t.Errorf("%d segments wait in the flush queues, want none", n)
	}
}

// segmentSpans returns, by segment id, the span ids of one segment message.
func segmentSpans(t *testing.T, value []byte) map[string][]string {
	t.Helper()
	var msg struct {
		Spans []struct {
			SpanID string `json:"span_id"`
			Attrs  map[string]struct {
				Value string `json:"value"`
			} `json:"attributes"`
		} `json:"spans"`
	}
	if err := json.Unmarshal(value, &msg); err != nil {
		t.Fatalf("segment %s: %v", value, err)
	}
	out := make(map[string][]string)
	for _, s := range msg.Spans {
		root := s.Attrs["sentry.segment.id"].Value
		out[root] = append(out[root], s.SpanID)
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// queuedSegments counts the entries of namespace ns's flush queues.
func queuedSegments(t *testing.T, client redis.UniversalClient, ns string) int64 {
	t.Helper()
	ctx := context.Background()
	queues, err := client.Keys(ctx, "span-buf:"+ns+":q:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, q := range queues {
		size, err := client.ZCard(ctx, q).Result()
		if err != nil {
			t.Fatal(err)
		}
		n += size
	}
	return n
}

// startConsumer runs cons and returns a function that cancels it and checks that
// Run returns nil within 30 s; the test's end calls it too.
func startConsumer(t *testing.T, ctx context.Context, cons *Consumer) (stop func()) {
	t.Helper()
	runCtx, cancel := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- cons.Run(runCtx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-runErr:
				if err != nil {
					t.Errorf("Run = %v, want nil after cancellation", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Run did not return within 30 s of cancellation")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
