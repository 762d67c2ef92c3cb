package segments

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
)

// startGate is a Redis hook that holds every pipeline until it is opened, so that
// the flusher's workers cannot finish their first cycle. entered is closed at the
// first pipeline it holds.
type startGate struct {
	open, entered chan struct{}
	once          sync.Once
}

func (*startGate) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*startGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (g *startGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		g.once.Do(func() { close(g.entered) })
		select {
		case <-g.open:
		case <-ctx.Done():
			return ctx.Err()
		}
		return next(ctx, cmds)
	}
}

// A flusher that takes long to start holds neither the assignment callback nor the
// loop: the watchdog never reports the loop stuck while the workers' first cycle
// waits for Redis for ten times the watchdog's timeout, and the span read meanwhile
// comes out once they are up.
func TestSlowFlusherStartDoesNotStallTheLoop(t *testing.T) {
	const (
		watchdog = 300 * time.Millisecond
		startup  = 10 * watchdog
	)
	env := kafkatest.New(t)
	in, out := env.Topic(2), env.Topic(1)
	client := miniClient(t)
	gate := &startGate{open: make(chan struct{}), entered: make(chan struct{})}
	client.AddHook(gate)

	core, logs := observer.New(zap.InfoLevel)
	flusher := fastConfig(nil)
	flusher.Producer, flusher.Topic = nil, ""
	flusher.StartupTimeout = time.Minute
	c, err := NewConsumer(ConsumerConfig{
		Brokers: env.Brokers, Group: env.Group(),
		InputTopic: in, OutputTopic: out,
		Redis:     client,
		Buffer:    store.Config{RootTimeout: 100 * time.Millisecond, Timeout: time.Second},
		Flusher:   flusher,
		BatchTime: 20 * time.Millisecond,
		Processor: processor.Config[processor.KafkaPayload]{Stuck: processor.StuckConfig{Timeout: watchdog}},
		Logger:    zap.New(core),
	})
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	ctx := env.Context(60 * time.Second)
	runConsumer(t, ctx, c)

	select {
	case <-gate.entered:
	case <-ctx.Done():
		t.Fatal("no flusher worker reached Redis within 60 s")
	}
	const root = `{"project_id":1,"span_id":"aaaaaaaaaaaaaaaa","trace_id":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","start_timestamp":1.0,"end_timestamp":2.0}`
	if err := env.Client.Produce(ctx, &kgo.Record{Topic: in, Partition: 1, Value: []byte(root)}); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(startup, func() { close(gate.open) })

	got, err := env.Client.Read(ctx, out, 1)
	if err != nil {
		t.Fatalf("reading the segment: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("read %d segments, want 1", len(got))
	}
	if n := logs.FilterMessage("loop is stuck").Len(); n != 0 {
		t.Fatalf("the watchdog reported the loop stuck %d times during a %v flusher start", n, startup)
	}
	if n := logs.FilterMessage("span flusher start-up failed").Len(); n != 0 {
		t.Fatalf("the flusher's start-up failed %d times", n)
	}
}

// Shards dealt to fewer workers while the flusher starts stop the surplus workers on
// purpose; that is no failed start.
func TestFlusherStartSurvivesFewerWorkers(t *testing.T) {
	client, _ := flusherRedis(t)
	gate := &startGate{open: make(chan struct{}), entered: make(chan struct{})}
	client.AddHook(gate)
	r := newRig(t, client, store.Config{}, fastConfig(newProducer(nil)))
	if err := r.fl.start([]int32{0, 1, 2, 3}); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := r.fl.Join(context.Background()); err != nil {
			t.Errorf("Join: %v", err)
		}
	})
	select {
	case <-gate.entered:
	case <-time.After(waitLong):
		t.Fatalf("no flusher worker reached Redis within %v", waitLong)
	}
	r.fl.setShards([]int32{0})
	waitFor(t, "the three surplus workers to exit", waitLong, func() bool { return r.count("span flusher worker exited") == 3 })
	close(gate.open)
	waitFor(t, "the flusher to accept messages", waitLong, func() bool { return r.fl.ready.Load() })
	if err := r.fl.Poll(); err != nil {
		t.Fatalf("Poll after a start with fewer workers: %v", err)
	}
}
