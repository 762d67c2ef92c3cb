package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
)

func newTestProducer(t *testing.T, env *kafkatest.Env) *Producer {
	t.Helper()
	p, err := NewProducer(ProducerConfig{Brokers: env.Brokers, Sarama: kafkatest.SaramaConfig(), Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	return p
}

func TestProducerConfigValidation(t *testing.T) {
	if _, err := NewProducer(ProducerConfig{}); err == nil || !strings.Contains(err.Error(), "Brokers is empty") {
		t.Fatalf("NewProducer without brokers = %v, want an error naming Brokers", err)
	}
}

func TestProducerDeliveriesResolveInOrderWithPositions(t *testing.T) {
	env := kafkatest.New(t)
	topic := env.Topic(4)
	p := newTestProducer(t, env)

	const n = 200
	deliveries := make([]*processor.Delivery, n)
	for i := range n {
		payload := processor.KafkaPayload{
			Key:   fmt.Appendf(nil, "key-%d", i%7),
			Value: fmt.Appendf(nil, "value-%d", i),
		}
		deliveries[i] = p.Produce(env.Context(waitFor), topic, payload)
	}
	// Per partition, the offsets must follow produce order.
	last := make(map[processor.Partition]int64)
	want := make(map[processor.Position]string)
	for i, d := range deliveries {
		pos, err := d.Wait(env.Context(waitFor))
		if err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
		if prev, ok := last[pos.Partition]; ok && pos.Offset <= prev {
			t.Fatalf("delivery %d at %s offset %d, after offset %d: out of order", i, pos.Partition, pos.Offset, prev)
		}
		last[pos.Partition] = pos.Offset
		want[pos] = fmt.Sprintf("value-%d", i)
	}
	if err := p.Close(env.Context(waitFor)); err != nil {
		t.Fatalf("Close: %v", err)
	}

	recs, err := env.Client.Read(env.Context(waitFor), topic, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		pos := processor.Position{Partition: processor.Partition{Topic: topic, Index: r.Partition}, Offset: r.Offset}
		if got := string(r.Value); got != want[pos] {
			t.Errorf("broker has %q at %v, but the delivery said %q went there", got, pos, want[pos])
		}
	}
}

// An operator tells output deliveries from DLQ deliveries by the topic tag, so
// each topic's successes and failures must be counted apart.
func TestProducerCountsDeliveriesPerTopic(t *testing.T) {
	env := kafkatest.New(t)
	out, dlq := env.Topic(1), env.Topic(1)
	rec := metricstest.NewRecorder()
	p, err := NewProducer(ProducerConfig{Brokers: env.Brokers, Sarama: kafkatest.SaramaConfig(), Logger: zaptest.NewLogger(t), Metrics: rec})
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	var deliveries []*processor.Delivery
	for range 3 {
		deliveries = append(deliveries, p.Produce(env.Context(waitFor), out, processor.KafkaPayload{Value: []byte("x")}))
	}
	deliveries = append(deliveries, p.Produce(env.Context(waitFor), dlq, processor.KafkaPayload{Value: []byte("y")}))
	// Larger than sarama's default Producer.MaxMessageBytes, so sarama fails it
	// without asking the broker.
	tooLarge := p.Produce(env.Context(waitFor), dlq, processor.KafkaPayload{Value: make([]byte, 2<<20)})
	for i, d := range deliveries {
		if _, err := d.Wait(env.Context(waitFor)); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
	}
	if _, err := tooLarge.Wait(env.Context(waitFor)); err == nil {
		t.Fatal("a message larger than MaxMessageBytes was delivered, want an error")
	}
	if err := p.Close(env.Context(waitFor)); err != nil {
		t.Fatalf("Close: %v", err)
	}

	status := func(s string) metrics.Tag { return metrics.Tag{Key: "status", Value: s} }
	topic := func(s string) metrics.Tag { return metrics.Tag{Key: "topic", Value: s} }
	for _, c := range []struct {
		tags []metrics.Tag
		want int64
	}{
		{[]metrics.Tag{status("success"), topic(out)}, 3},
		{[]metrics.Tag{status("success"), topic(dlq)}, 1},
		{[]metrics.Tag{status("error"), topic(dlq)}, 1},
		{[]metrics.Tag{status("error"), topic(out)}, 0},
	} {
		if got := rec.Counter("producer.produce_status", c.tags...); got != c.want {
			t.Errorf("producer.produce_status%v = %d, want %d", c.tags, got, c.want)
		}
	}
}

func TestProducerAfterClose(t *testing.T) {
	env := kafkatest.New(t)
	p := newTestProducer(t, env)
	if err := p.Close(env.Context(waitFor)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	d := p.Produce(context.Background(), "t", processor.KafkaPayload{Value: []byte("x")})
	if _, err := d.Wait(env.Context(waitFor)); !errors.Is(err, ErrProducerClosed) {
		t.Fatalf("Produce after Close resolved with %v, want ErrProducerClosed", err)
	}
	if err := p.Close(env.Context(waitFor)); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestProducerRespectsContextWhenInputIsFull(t *testing.T) {
	env := kafkatest.New(t)
	p := newTestProducer(t, env)
	defer p.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// With ctx already done Produce must not block; sarama may or may not take
	// the message, so either outcome is a resolved delivery.
	d := p.Produce(ctx, env.Topic(1), processor.KafkaPayload{Value: []byte("x")})
	if _, err := d.Wait(env.Context(waitFor)); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("delivery = %v, want success or context.Canceled", err)
	}
}

func TestDLQProducerHeaders(t *testing.T) {
	env := kafkatest.New(t)
	dlqTopic := env.Topic(1)
	p := newTestProducer(t, env)
	defer p.Close(context.Background())
	dlq := NewDLQProducer(p, dlqTopic)

	src := processor.Partition{Topic: "spans", Index: 3}
	msg := processor.NewBrokerMessage(processor.KafkaPayload{
		Key:     []byte("k"),
		Value:   []byte("not json"),
		Headers: []processor.Header{{Key: "trace", Value: []byte("abc")}},
	}, src, 41, time.Now())
	inv := processor.Invalid(msg, errors.New("bad payload")).(*processor.InvalidMessageError)
	if _, err := dlq.Produce(env.Context(waitFor), msg, inv).Wait(env.Context(waitFor)); err != nil {
		t.Fatalf("DLQ delivery: %v", err)
	}

	recs, err := env.Client.Read(env.Context(waitFor), dlqTopic, 1)
	if err != nil {
		t.Fatal(err)
	}
	r := recs[0]
	if string(r.Key) != "k" || string(r.Value) != "not json" {
		t.Errorf("DLQ record key/value = %q/%q, want the original k/not json", r.Key, r.Value)
	}
	got := make(map[string]string)
	var order []string
	for _, h := range r.Headers {
		got[h.Key] = string(h.Value)
		order = append(order, h.Key)
	}
	want := map[string]string{
		"trace":              "abc",
		"original_topic":     "spans",
		"original_partition": "3",
		"original_offset":    "41",
		"reason":             "bad payload",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("DLQ header %s = %q, want %q (headers %v)", k, got[k], v, got)
		}
	}
	if len(order) != len(want) || order[0] != "trace" {
		t.Errorf("DLQ headers %v; want the original ones first, then the four origin headers", order)
	}
}
