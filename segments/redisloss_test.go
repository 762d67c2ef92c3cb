package segments

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
)

// Redis emptied (FLUSHALL) after the spans were ingested and before their segments
// were flushed: the flush notices by the marker, the consumer reads the partitions
// again from the committed offsets, and every span comes out, in its own segment.
func TestConsumerRecoversFromALostRedis(t *testing.T) {
	env := kafkatest.New(t)
	in, out := env.Topic(4), env.Topic(1)
	client, mini := flusherRedis(t)
	ctx := env.Context(90 * time.Second)

	// Four traces, one per partition: a root and three children each.
	want := make(map[string][]string) // root -> the span ids of its segment, sorted
	var records []*kgo.Record
	for tr := range 4 {
		trace := hexID(0x100+tr, 32)
		root := hexID(0x10*(tr+1), 16)
		ids := []string{root}
		records = append(records, &kgo.Record{Topic: in, Partition: int32(tr), Value: spanJSON(trace, root, "")})
		for c := range 3 {
			child := hexID(0x10*(tr+1)+c+1, 16)
			ids = append(ids, child)
			records = append(records, &kgo.Record{Topic: in, Partition: int32(tr), Value: spanJSON(trace, child, root)})
		}
		slices.Sort(ids)
		want[root] = ids
	}
	if err := env.Client.Produce(ctx, records...); err != nil {
		t.Fatal(err)
	}

	rec := metricstest.NewRecorder()
	flusher := fastConfig(nil)
	flusher.Producer, flusher.Topic = nil, ""
	group := env.Group()
	c, err := NewConsumer(ConsumerConfig{
		Brokers: env.Brokers, Group: group,
		InputTopic: in, OutputTopic: out,
		Redis: client,
		// Long enough that nothing is flushed before Redis is emptied.
		Buffer:    store.Config{RootTimeout: 4 * time.Second, Timeout: 8 * time.Second},
		Flusher:   flusher,
		BatchTime: 20 * time.Millisecond,
		Metrics:   rec,
		// Whatever reaches the commit function is committed at once.
		Processor: processor.Config[processor.KafkaPayload]{CommitPolicy: processor.ImmediateCommit()},
	})
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	runConsumer(t, ctx, c)

	waitMetric(t, rec, "every span to be in Redis", 30*time.Second, func() bool {
		return rec.Counter("spans.buffer.process_spans.count") >= int64(len(records))
	})
	if n := rec.Counter("spans.buffer.flusher.produced_segments"); n != 0 {
		t.Fatalf("%d segments were produced before Redis was emptied; the test needs them unflushed (a very slow machine?)", n)
	}
	if n := committedSpans(t, ctx, env.Brokers, group); n != 0 {
		t.Fatalf("the group committed %d spans before any segment was produced, want none", n)
	}
	if mini != nil {
		mini.FlushAll()
	} else if err := client.FlushDB(ctx).Err(); err != nil { // the test's own DB of the shared server
		t.Fatal(err)
	}

	// One message per segment, each segment once: a duplicate among the first four
	// would leave a segment missing.
	msgs, err := env.Client.Read(ctx, out, len(want))
	if err != nil {
		t.Fatalf("reading %d segments: %v", len(want), err)
	}
	got := make(map[string][]string)
	for _, m := range msgs {
		var msg struct {
			Spans []struct {
				SpanID string `json:"span_id"`
				Attrs  map[string]struct {
					Value string `json:"value"`
				} `json:"attributes"`
			} `json:"spans"`
		}
		if err := json.Unmarshal(m.Value, &msg); err != nil {
			t.Fatalf("segment %s: %v", m.Value, err)
		}
		for _, s := range msg.Spans {
			root := s.Attrs["sentry.segment.id"].Value
			got[root] = append(got[root], s.SpanID)
		}
	}
	for root, ids := range got {
		slices.Sort(ids)
		if !slices.Equal(ids, want[root]) {
			t.Errorf("segment %s holds %v, want %v", root, ids, want[root])
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d segments came out, want %d", len(got), len(want))
	}
	if n := rec.Counter("spans.buffer.redis_lost"); n != 1 {
		t.Errorf("spans.buffer.redis_lost = %d, want 1", n)
	}
	if n := rec.Counter("spans.buffer.rewinds"); n != 1 {
		t.Errorf("spans.buffer.rewinds = %d, want 1", n)
	}
}

// committedSpans returns the sum of group's committed offsets: on a topic whose
// offsets start at 0, the messages committed.
func committedSpans(t *testing.T, ctx context.Context, brokers []string, group string) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetching the group's offsets: %v", err)
	}
	var n int64
	offsets.Each(func(o kadm.OffsetResponse) { n += max(o.At, 0) }) // -1: none committed
	return n
}
