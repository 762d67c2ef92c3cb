package franz_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
)

// rejectBad reports every message whose value starts with "bad" invalid.
func rejectBad(m processor.Message[payload]) (payload, error) {
	if bytes.HasPrefix(m.Payload.Value, []byte("bad")) {
		return payload{}, processor.Invalid(m, errors.New("value starts with bad"))
	}
	return m.Payload, nil
}

// newProducer returns a franz.Producer closed when the test ends.
func newProducer(t *testing.T, env *kafkatest.Env) *franz.Producer {
	t.Helper()
	p, err := franz.NewProducer(franz.ProducerConfig{Brokers: env.Brokers})
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("closing the producer: %v", err)
		}
	})
	return p
}

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
			produce(t, env, topic, 2, 50, func(p int32, i int) string {
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
			m := startMember(t, env, topic, group, "", a, processor.Config[payload]{
				Metrics: rec,
				DLQ: &processor.DLQPolicy[payload]{
					Producer:                kafka.NewDLQProducer(newProducer(t, env), dlqTopic),
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
}
