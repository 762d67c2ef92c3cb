package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
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

func TestDLQLimitFailsTheProcessor(t *testing.T) {
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
		m := startMember(t, b, env, topic, group, "", a, processor.Config[payload]{
			DLQ: &processor.DLQPolicy[payload]{Producer: newDLQ(t, b, env, dlqTopic), MaxConsecutiveInvalid: 2},
		})
		err := m.result()
		if !errors.Is(err, processor.ErrDLQLimit) || !strings.Contains(err.Error(), "offset 12") {
			t.Fatalf("Run = %v, want an error wrapping ErrDLQLimit at offset 12", err)
		}
		if got := committedOf(t, env, topic, group)[0]; got > 12 {
			t.Errorf("committed %d, past the message at offset 12 that exceeded the limit", got)
		}
		// Deliveries still in flight when the processor fails may not land; nothing
		// was committed past them, so a restart sends them again.
		if got := sumEnds(t, env, dlqTopic); got > 2 {
			t.Errorf("%d records in the DLQ topic, want at most the 2 within the limit", got)
		}
	})
}

// watchedDLQ counts the deliveries of a DLQ producer and how many failed, and
// notifies n as each resolves.
type watchedDLQ struct {
	inner              processor.DLQProducer[payload]
	n                  *notifier
	attempts, failures atomic.Int32
}

func (w *watchedDLQ) Produce(ctx context.Context, msg processor.Message[payload], inv *processor.InvalidMessageError) *processor.Delivery {
	d := w.inner.Produce(ctx, msg, inv)
	w.attempts.Add(1)
	go func() {
		<-d.Done() // the producer resolves every delivery, within its timeouts
		if _, err := d.Result(); err != nil {
			w.failures.Add(1)
		}
		w.n.Notify()
	}()
	return d
}

// TestDLQOutageLosesNothing: the DLQ topic does not exist and the producer may not
// create it, so deliveries fail. The consumer keeps running, commits nothing past
// the invalid message, and once the topic exists the message reaches it and the
// offsets move to the end.
func TestDLQOutageLosesNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		env := kafkatest.New(t)
		topic, group, dlqTopic := env.Topic(1), env.Group(), env.Name("dlq")
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
		var w kafka.Writer
		if b.name == "sarama" {
			sc := kafkatest.SaramaConfig()
			sc.Metadata.AllowAutoTopicCreation = false
			sc.Producer.Retry.Max = 1
			p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: env.Brokers, Sarama: sc})
			if err != nil {
				t.Fatalf("NewProducer: %v", err)
			}
			t.Cleanup(func() { closeProducer(t, p.Close) })
			w = p
		} else {
			w = b.producer(t, env) // kgo never asks the broker to create a topic
		}
		dlq := &watchedDLQ{inner: kafka.NewDLQProducer(w, dlqTopic), n: n}
		m := startMember(t, b, env, topic, group, "", a, processor.Config[payload]{
			DLQ: &processor.DLQPolicy[payload]{Producer: dlq, Timeout: 2 * time.Second,
				RetryBackoff: 50 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond},
		})
		waitUntil(t, n, "two failed DLQ deliveries", func() bool { return dlq.failures.Load() >= 2 })
		if got := committedOf(t, env, topic, group)[0]; got > 5 {
			t.Fatalf("committed %d while the invalid message at offset 5 was not in the DLQ", got)
		}
		env.CreateTopic(dlqTopic, 1)
		waitUntil(t, n, "the DLQ delivery once the topic exists", func() bool {
			return dlq.attempts.Load() > dlq.failures.Load()
		})
		waitUntil(t, n, "20 messages processed", func() bool { return s.distinct() == 20 })
		if err := m.stop(); err != nil {
			t.Fatalf("Run = %v; a DLQ outage must not stop the consumer", err)
		}
		committedEqualsEnds(t, env, topic, group)
		// A delivery that timed out is sent again; if the first lands late too (kgo
		// keeps a record until the topic appears), the DLQ holds it twice: at least
		// once, like everything else.
		ctx := env.Context(waitFor)
		recs, err := env.Client.Read(ctx, dlqTopic, int(sumEnds(t, env, dlqTopic)))
		if err != nil || len(recs) == 0 {
			t.Fatalf("read %d DLQ records (err %v), want the invalid message", len(recs), err)
		}
		for _, r := range recs {
			if string(r.Value) != "bad" {
				t.Errorf("DLQ record %q, want only the invalid message", r.Value)
			}
		}
	})
}
