package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
)

// rejectBad makes the app report every message whose value starts with "bad" invalid.
func rejectBad(_ context.Context, m processor.Message[payload]) (payload, error) {
	if bytes.HasPrefix(m.Payload.Value, []byte("bad")) {
		return payload{}, processor.Invalid(m, errors.New("value starts with bad"))
	}
	return m.Payload, nil
}

// newDLQ returns a DLQ producer writing to topic through b's producer, closed when
// the test ends.
func newDLQ(t *testing.T, b backend, env *kafkatest.Env, topic string) *kafka.DLQProducer {
	t.Helper()
	return kafka.NewDLQProducer(b.producer(t, env), topic)
}

// sumEnds returns the number of records in topic.
func sumEnds(t *testing.T, env *kafkatest.Env, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ends, err := env.Client.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n
}

func TestInvalidMessagesReachTheDLQWithOriginalBytesAndHeaders(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		cases := []struct {
			name string
			// bufferBytes of 1 keeps no message, so every DLQ message is fetched again.
			bufferBytes int
			refetched   bool
		}{
			{"from the buffer", 0, false},
			{"evicted and fetched again", 1, true},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				env := kafkatest.New(t)
				topic, dlqTopic, group := env.Topic(2), env.Topic(1), env.Group()
				env.Fill(topic, 2, 50, func(p int32, i int) string {
					if i%10 == 3 {
						return fmt.Sprintf("bad-%d-%d", p, i)
					}
					return plain(p, i)
				})
				n := &notifier{}
				s := newSeen(n)
				a := newApp(n, s)
				a.fn = rejectBad
				rec := metricstest.NewRecorder()
				m := startMember(t, b, env, topic, group, "", a, processor.Config[payload]{
					Metrics: rec,
					DLQ: &processor.DLQPolicy[payload]{
						Producer:                newDLQ(t, b, env, dlqTopic),
						BufferBytesPerPartition: tc.bufferBytes,
					},
				})
				waitUntil(t, n, "100 messages processed", func() bool { return s.distinct() == 100 })
				if err := m.stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				committedEqualsEnds(t, env, topic, group)
				if got := rec.Counter("consumer.invalid_message.count"); got != 10 {
					t.Errorf("invalid_message.count = %d, want 10", got)
				}
				if got := rec.Counter("consumer.dlq.refetched"); (got > 0) != tc.refetched {
					t.Errorf("dlq.refetched = %d, want refetches: %v", got, tc.refetched)
				}
				if got := rec.Counter("consumer.dlq.dropped_messages"); got != 0 {
					t.Errorf("dlq.dropped_messages = %d, want 0", got)
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				defer cancel()
				recs, err := env.Client.Read(ctx, dlqTopic, 10)
				if err != nil || len(recs) != 10 {
					t.Fatalf("read %d DLQ records (err %v), want 10", len(recs), err)
				}
				for _, r := range recs {
					h := map[string]string{}
					for _, kv := range r.Headers {
						h[kv.Key] = string(kv.Value)
					}
					want := fmt.Sprintf("bad-%s-%s", h[kafka.HeaderOriginalPartition], h[kafka.HeaderOriginalOffset])
					if string(r.Value) != want || h[kafka.HeaderOriginalTopic] != topic || !strings.Contains(h[kafka.HeaderReason], "value starts with bad") {
						t.Errorf("DLQ record value %q headers %v; want the original bytes %q and the origin headers", r.Value, h, want)
					}
					if off, _ := strconv.Atoi(h[kafka.HeaderOriginalOffset]); off%10 != 3 {
						t.Errorf("DLQ record from offset %d, which was valid", off)
					}
				}
				if got := sumEnds(t, env, dlqTopic); got != 10 {
					t.Errorf("%d records in the DLQ topic, want 10", got)
				}
			})
		}
	})
}

func TestDLQLimitStopsProductionNotConsumption(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		env := kafkatest.New(t)
		topic, dlqTopic, group := env.Topic(1), env.Topic(1), env.Group()
		env.Fill(topic, 1, 40, func(p int32, i int) string {
			if i >= 10 && i < 15 {
				return fmt.Sprintf("bad-%d", i)
			}
			return plain(p, i)
		})
		n := &notifier{}
		s := newSeen(n)
		a := newApp(n, s)
		a.fn = rejectBad
		rec := metricstest.NewRecorder()
		m := startMember(t, b, env, topic, group, "", a, processor.Config[payload]{
			Metrics: rec,
			DLQ:     &processor.DLQPolicy[payload]{Producer: newDLQ(t, b, env, dlqTopic), MaxConsecutiveInvalid: 2},
		})
		waitUntil(t, n, "40 messages processed", func() bool { return s.distinct() == 40 })
		if err := m.stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		committedEqualsEnds(t, env, topic, group)
		if got := rec.Counter("consumer.dlq.dropped_messages"); got != 3 {
			t.Errorf("dlq.dropped_messages = %d, want 3", got)
		}
		if got := sumEnds(t, env, dlqTopic); got != 2 {
			t.Errorf("%d records in the DLQ topic, want 2", got)
		}
	})
}

func TestDLQBrokerErrorDoesNotStopTheConsumer(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		env := kafkatest.New(t)
		topic, group := env.Topic(1), env.Group()
		env.Fill(topic, 1, 20, func(p int32, i int) string {
			if i == 5 {
				return "bad"
			}
			return plain(p, i)
		})
		n := &notifier{}
		s := newSeen(n)
		a := newApp(n, s)
		a.fn = rejectBad
		rec := metricstest.NewRecorder()
		// The DLQ lives on a second broker, which is gone by the time the DLQ is used.
		dead, err := kafkatest.Start()
		if err != nil {
			t.Fatal(err)
		}
		sc := kafkatest.SaramaConfig()
		sc.Producer.Retry.Max = 1
		sc.Metadata.Retry.Max = 1
		prod, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: dead.Addrs(), Sarama: sc})
		if err != nil {
			dead.Close()
			t.Fatalf("NewProducer: %v", err)
		}
		dead.Close()
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			_ = prod.Close(ctx) // it cannot deliver; only its goroutines matter here
		}()
		m := startMember(t, b, env, topic, group, "", a, processor.Config[payload]{
			Metrics: rec,
			DLQ:     &processor.DLQPolicy[payload]{Producer: kafka.NewDLQProducer(prod, "dlq"), Timeout: 2 * time.Second},
		})
		waitUntil(t, n, "20 messages processed", func() bool { return s.distinct() == 20 })
		if err := m.stop(); err != nil {
			t.Fatalf("Run = %v; a DLQ failure must not stop the consumer", err)
		}
		committedEqualsEnds(t, env, topic, group)
		if got := rec.Counter("consumer.dlq.dropped_messages"); got != 1 {
			t.Errorf("dlq.dropped_messages = %d, want 1", got)
		}
	})
}
