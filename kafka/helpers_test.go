package kafka

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

// waitFor bounds every wait of these tests.
const waitFor = 30 * time.Second

func TestMain(m *testing.M) {
	// go-metrics, which sarama records into, starts one ticker goroutine per
	// process the first time a meter is made and never stops it.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

func newTestConsumer(t *testing.T, env *kafkatest.Env, group, assignor string) *Consumer {
	t.Helper()
	c, err := NewConsumer(ConsumerConfig{
		Brokers:  env.Brokers,
		GroupID:  group,
		Assignor: assignor,
		Sarama:   kafkatest.SaramaConfig(),
		Logger:   zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return c
}

// produce writes n records to each of partitions of topic, valued
// "<partition>-<offset>", and fails the test if it cannot.
func produce(t *testing.T, env *kafkatest.Env, topic string, partitions []int32, n int) {
	t.Helper()
	var recs []*kgo.Record
	for _, p := range partitions {
		for i := range n {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%d-%d", p, i)})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := env.Client.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
}

func indexes(n int32) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}

// member runs a consumer's poll loop on its own goroutine, as the processor
// would, and records what it sees.
type member struct {
	c *Consumer
	// onRevoke, if set, runs inside OnRevoke on the loop goroutine.
	onRevoke func(c *Consumer, revoked []processor.Partition)

	msgs   chan processor.Message[processor.KafkaPayload]
	events chan string // "assign [..]" and "revoke [..]", in order

	stop chan struct{}
	done chan struct{}
}

func startMember(t *testing.T, c *Consumer, topic string, onRevoke func(*Consumer, []processor.Partition)) *member {
	t.Helper()
	m := &member{
		c:        c,
		onRevoke: onRevoke,
		msgs:     make(chan processor.Message[processor.KafkaPayload], 10000),
		events:   make(chan string, 100),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	err := c.Subscribe([]string{topic}, processor.RebalanceCallbacks{
		OnAssign: func(added []processor.Partition) { m.events <- fmt.Sprint("assign ", added) },
		OnRevoke: func(revoked []processor.Partition) {
			if m.onRevoke != nil {
				m.onRevoke(c, revoked)
			}
			m.events <- fmt.Sprint("revoke ", revoked)
		},
	})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	go func() {
		defer close(m.done)
		for {
			select {
			case <-m.stop:
				return
			default:
			}
			msg, ok, err := c.Poll(context.Background(), 50*time.Millisecond)
			if err != nil {
				t.Errorf("Poll: %v", err)
				return
			}
			if ok {
				m.msgs <- msg
			}
		}
	}()
	t.Cleanup(m.close)
	return m
}

// close stops the loop and closes the consumer; it may be called more than once.
func (m *member) close() {
	select {
	case <-m.stop:
		return
	default:
	}
	close(m.stop)
	<-m.done
	_ = m.c.Close()
}

// nextEvent waits for the member's next rebalance callback.
func (m *member) nextEvent(t *testing.T, what string) string {
	t.Helper()
	select {
	case ev := <-m.events:
		return ev
	case <-time.After(waitFor):
		t.Fatalf("timed out after %s waiting for %s", waitFor, what)
		return ""
	}
}

// take waits for n messages.
func (m *member) take(t *testing.T, n int, what string) []processor.Message[processor.KafkaPayload] {
	t.Helper()
	out := make([]processor.Message[processor.KafkaPayload], 0, n)
	deadline := time.After(waitFor)
	for len(out) < n {
		select {
		case msg := <-m.msgs:
			out = append(out, msg)
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s: got %d of %d messages", waitFor, what, len(out), n)
		}
	}
	return out
}

// pollN polls c on the test's goroutine until it has n messages.
func pollN(t *testing.T, c *Consumer, n int, what string) []processor.Message[processor.KafkaPayload] {
	t.Helper()
	var out []processor.Message[processor.KafkaPayload]
	deadline := time.Now().Add(waitFor)
	for len(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: got %d of %d messages", waitFor, what, len(out), n)
		}
		msg, ok, err := c.Poll(context.Background(), 100*time.Millisecond)
		if err != nil {
			t.Fatalf("Poll while waiting for %s: %v", what, err)
		}
		if ok {
			out = append(out, msg)
		}
	}
	return out
}

func origin(t *testing.T, msg processor.Message[processor.KafkaPayload]) processor.Position {
	t.Helper()
	pos, ok := msg.Origin()
	if !ok {
		t.Fatalf("message %s has no broker origin", msg.Committable)
	}
	return pos
}

// checkValue fails unless msg holds the value produce wrote at its position.
func checkValue(t *testing.T, msg processor.Message[processor.KafkaPayload]) {
	t.Helper()
	pos := origin(t, msg)
	want := strconv.Itoa(int(pos.Partition.Index)) + "-" + strconv.FormatInt(pos.Offset, 10)
	if string(msg.Payload.Value) != want {
		t.Errorf("message at %s offset %d holds %q, want %q", pos.Partition, pos.Offset, msg.Payload.Value, want)
	}
}

// offsetsByPartition groups the offsets of msgs by partition, in delivery order.
func offsetsByPartition(t *testing.T, msgs []processor.Message[processor.KafkaPayload]) map[processor.Partition][]int64 {
	t.Helper()
	out := make(map[processor.Partition][]int64)
	for _, msg := range msgs {
		pos := origin(t, msg)
		out[pos.Partition] = append(out[pos.Partition], pos.Offset)
	}
	return out
}

func partitionsOf(topic string, idx ...int32) []processor.Partition {
	out := make([]processor.Partition, len(idx))
	for i, x := range idx {
		out[i] = processor.Partition{Topic: topic, Index: x}
	}
	return out
}

// syncSet is a set of partitions written by one goroutine and read by another.
type syncSet struct {
	mu sync.Mutex
	m  map[processor.Partition]int64
}

func (s *syncSet) set(p processor.Partition, v int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[processor.Partition]int64)
	}
	s.m[p] = v
}

func (s *syncSet) get(p processor.Partition) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[p]
	return v, ok
}
