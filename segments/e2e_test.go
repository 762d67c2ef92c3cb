package segments

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/segments/store"
)

// TestConsumerEndToEnd runs the ready-made consumer on the in-process broker and miniredis,
// or on the real ones named by CREEK_KAFKA_BROKERS and CREEK_REDIS_ADDR.
func TestConsumerEndToEnd(t *testing.T) {
	env := kafkatest.New(t)
	in, out, dlq := env.Topic(4), env.Topic(1), env.Topic(1)
	client, _ := flusherRedis(t)

	const valid = `{"project_id":12,"span_id":"aaaaaaaaaaaaaaaa","trace_id":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","start_timestamp":1699999999.0,"end_timestamp":1700000000.0}`
	invalid := []string{
		`{"project_id":12,"span_id":"cccccccccccccccc","trace_id":null,"start_timestamp":1699999999.0,"end_timestamp":1700000000.0}`,
		`{"project_id":12,"span_id":"dddddddddddddddd","trace_id":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","start_timestamp":1699999999.0,"end_timestamp":"1700000000.0"}`,
	}
	ctx := env.Context(60 * time.Second)
	var records []*kgo.Record
	for _, v := range append([]string{valid}, invalid...) {
		records = append(records, &kgo.Record{Topic: in, Partition: 2, Value: []byte(v)})
	}
	if err := env.Client.Produce(ctx, records...); err != nil {
		t.Fatal(err)
	}

	flusher := fastConfig(nil)
	flusher.Producer, flusher.Topic = nil, ""
	c, err := NewConsumer(ConsumerConfig{
		Brokers: env.Brokers, Group: env.Group(),
		InputTopic: in, OutputTopic: out, DLQTopic: dlq,
		Redis:     client,
		Buffer:    store.Config{RootTimeout: 500 * time.Millisecond, Timeout: time.Second},
		Flusher:   flusher,
		BatchTime: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	runConsumer(t, ctx, c)

	got, err := env.Client.Read(ctx, out, 1)
	if err != nil {
		t.Fatalf("reading the segment: %v", err)
	}
	var msg struct {
		FlushID string            `json:"flush_id"`
		Spans   []json.RawMessage `json:"spans"`
	}
	if err := json.Unmarshal(got[0].Value, &msg); err != nil {
		t.Fatalf("segment message %s: %v", got[0].Value, err)
	}
	if len(msg.FlushID) != 32 || len(msg.Spans) != 1 {
		t.Fatalf("segment message %s, want a 32-hex flush_id and one span", got[0].Value)
	}
	var want, span map[string]any
	_ = json.Unmarshal([]byte(valid), &want)
	want["is_segment"] = true
	want["attributes"] = map[string]any{"sentry.segment.id": map[string]any{"type": "string", "value": "aaaaaaaaaaaaaaaa"}}
	if err := json.Unmarshal(msg.Spans[0], &span); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(span, want) {
		t.Fatalf("span\n %s\nwant the input plus is_segment and the segment id attribute", msg.Spans[0])
	}
	wantTP := "00-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-aaaaaaaaaaaaaaaa-01"
	if i := slices.IndexFunc(got[0].Headers, func(h kgo.RecordHeader) bool { return h.Key == HeaderTraceParent }); i < 0 || string(got[0].Headers[i].Value) != wantTP {
		t.Fatalf("segment record headers %+v, want %s: %s naming its root span", got[0].Headers, HeaderTraceParent, wantTP)
	}

	dead, err := env.Client.Read(ctx, dlq, 2)
	if err != nil {
		t.Fatalf("reading the DLQ: %v", err)
	}
	var deadValues []string
	for _, r := range dead {
		deadValues = append(deadValues, string(r.Value))
		if !slices.ContainsFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == kafka.HeaderReason && len(h.Value) > 0 }) {
			t.Errorf("DLQ record %s has no %s header", r.Value, kafka.HeaderReason)
		}
	}
	slices.Sort(deadValues)
	if !slices.Equal(deadValues, invalid) {
		t.Fatalf("DLQ holds %q, want %q", deadValues, invalid)
	}
}

// TestTwoConsumersShareARedis runs two span buffers (their own group, input and
// output topics) on one Redis with the same trace in both: each writes exactly its
// own spans, in one segment, to its own output topic.
func TestTwoConsumersShareARedis(t *testing.T) {
	env := kafkatest.New(t)
	client, _ := flusherRedis(t)
	ctx := env.Context(60 * time.Second)
	const trace = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	spanJSON := func(id, parent string) string {
		p := ""
		if parent != "" {
			p = `,"parent_span_id":"` + parent + `"`
		}
		return `{"project_id":12,"span_id":"` + id + `","trace_id":"` + trace + `"` + p + `,"start_timestamp":1699999999.0,"end_timestamp":1700000000.0}`
	}
	root := strings.Repeat("a", 16)
	deployments := []struct {
		child string
		out   string
	}{{child: strings.Repeat("c", 16)}, {child: strings.Repeat("d", 16)}}
	for i := range deployments {
		d := &deployments[i]
		in := env.Topic(2)
		d.out = env.Topic(1)
		records := []*kgo.Record{
			{Topic: in, Partition: 0, Value: []byte(spanJSON(root, ""))},
			{Topic: in, Partition: 0, Value: []byte(spanJSON(d.child, root))},
		}
		if err := env.Client.Produce(ctx, records...); err != nil {
			t.Fatal(err)
		}
		flusher := fastConfig(nil)
		flusher.Producer, flusher.Topic = nil, ""
		c, err := NewConsumer(ConsumerConfig{
			Brokers: env.Brokers, Group: env.Group(),
			InputTopic: in, OutputTopic: d.out,
			Redis:     client,
			Buffer:    store.Config{RootTimeout: 500 * time.Millisecond, Timeout: time.Second},
			Flusher:   flusher,
			BatchTime: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatalf("NewConsumer %d: %v", i, err)
		}
		runConsumer(t, ctx, c)
	}
	for i, d := range deployments {
		got, err := env.Client.Read(ctx, d.out, 1)
		if err != nil {
			t.Fatalf("reading deployment %d's segment: %v", i, err)
		}
		var msg struct {
			Spans []struct {
				SpanID string `json:"span_id"`
			} `json:"spans"`
		}
		if err := json.Unmarshal(got[0].Value, &msg); err != nil {
			t.Fatalf("segment message %s: %v", got[0].Value, err)
		}
		var ids []string
		for _, s := range msg.Spans {
			ids = append(ids, s.SpanID)
		}
		slices.Sort(ids)
		if want := []string{root, d.child}; !slices.Equal(ids, want) {
			t.Errorf("deployment %d wrote spans %v in its segment, want its own %v", i, ids, want)
		}
	}
}

func TestNewConsumerValidates(t *testing.T) {
	client, _ := flusherRedis(t)
	base := func(edit func(*ConsumerConfig)) ConsumerConfig {
		cfg := ConsumerConfig{Brokers: []string{"127.0.0.1:1"}, Group: "g", InputTopic: "i", OutputTopic: "o", Redis: client}
		edit(&cfg)
		return cfg
	}
	cases := []struct {
		name string
		cfg  ConsumerConfig
		want string
	}{
		{"no input topic", base(func(c *ConsumerConfig) { c.InputTopic = "" }), "InputTopic is empty"},
		{"no output topic", base(func(c *ConsumerConfig) { c.OutputTopic = "" }), "OutputTopic is empty"},
		{"no redis", base(func(c *ConsumerConfig) { c.Redis = nil }), "Redis is nil"},
		{"brokers set twice", base(func(c *ConsumerConfig) { c.Kafka.Brokers = []string{"b"} }), "Kafka.Brokers and GroupID are set"},
		{"franz brokers set twice", base(func(c *ConsumerConfig) { c.Franz.GroupID = "g" }), "Franz.Brokers and GroupID are set"},
		{"group unfit for a namespace", base(func(c *ConsumerConfig) { c.Group = "a{b}" }), "braces or whitespace"},
		{"topics set twice", base(func(c *ConsumerConfig) { c.Processor.Topics = []string{"x"} }), "Processor.Topics is set"},
		{"unknown backend", base(func(c *ConsumerConfig) { c.Backend = "confluent" }), `Backend "confluent" is unknown`},
		{"sarama settings on franz", base(func(c *ConsumerConfig) { c.Kafka.Sarama = sarama.NewConfig() }), "set Backend: segments.Sarama"},
		{"franz settings on sarama", base(func(c *ConsumerConfig) { c.Backend, c.Franz.ClientID = Sarama, "x" }), "set Backend: segments.Franz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewConsumer(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewConsumer error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	_, err := NewFactory(FactoryConfig{Redis: client, Flusher: FlusherConfig{Topic: "o", Producer: newProducer(nil)}, BatchSize: -1})
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("NewFactory with BatchSize -1 = %v, want an error", err)
	}
}
