package lookup_test

import (
	"context"
	"errors"
	"io"
	"log"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
	"github.com/creekstream/creek/strategies/lookup"
)

const (
	profiles = "profiles"
	events   = "events"
	// wait bounds every wait on the broker or the View.
	wait = 10 * time.Second
)

// saramaConfig returns a fresh config for one goka builder: the builders write their
// client ID into it, so sharing one between them would race.
func saramaConfig() *sarama.Config {
	cfg := goka.DefaultConfig()
	// The in-process broker rejects protocol versions below 0.11.
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Compression = sarama.CompressionNone
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	return cfg
}

// topicManagerConfig fits a single broker.
func topicManagerConfig() *goka.TopicManagerConfig {
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = 1
	tmc.Stream.Replication = 1
	return tmc
}

// quiet discards goka's logging, which would otherwise go to the standard logger.
var quiet = log.New(io.Discard, "", 0)

// env is an in-process broker with a goka table of user names and a stream of events.
type env struct {
	brokers []string
	emitter *goka.Emitter
	events  sarama.SyncProducer
	stream  sarama.PartitionConsumer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	cluster, err := kafkatest.Start(kafkatest.WithPartitions(1), kafkatest.WithTopics(events))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	e := &env{brokers: cluster.Addrs()}

	// goka's topic manager creates the table as a compacted topic.
	tm, err := goka.NewTopicManager(e.brokers, saramaConfig(), topicManagerConfig())
	if err != nil {
		t.Fatalf("goka topic manager: %v", err)
	}
	if err := tm.EnsureTableExists(profiles, 2); err != nil {
		t.Fatalf("create table topic: %v", err)
	}
	if err := tm.Close(); err != nil {
		t.Fatalf("close topic manager: %v", err)
	}

	e.emitter, err = goka.NewEmitter(e.brokers, profiles, new(codec.String),
		goka.WithEmitterProducerBuilder(goka.ProducerBuilderWithConfig(saramaConfig())),
		goka.WithEmitterLogger(quiet))
	if err != nil {
		t.Fatalf("goka emitter: %v", err)
	}
	t.Cleanup(func() {
		if err := e.emitter.Finish(); err != nil {
			t.Errorf("finish emitter: %v", err)
		}
	})

	e.events, err = sarama.NewSyncProducer(e.brokers, saramaConfig())
	if err != nil {
		t.Fatalf("event producer: %v", err)
	}
	t.Cleanup(func() { _ = e.events.Close() })

	consumer, err := sarama.NewConsumer(e.brokers, saramaConfig())
	if err != nil {
		t.Fatalf("event consumer: %v", err)
	}
	t.Cleanup(func() { _ = consumer.Close() })
	e.stream, err = consumer.ConsumePartition(events, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("consume %s: %v", events, err)
	}
	t.Cleanup(func() { _ = e.stream.Close() })
	return e
}

// setName writes a user's name to the table.
func (e *env) setName(t testing.TB, user, name string) {
	t.Helper()
	if err := e.emitter.EmitSync(user, name); err != nil {
		t.Fatalf("emit %s=%s to table: %v", user, name, err)
	}
}

// produce writes an event for user to the stream.
func (e *env) produce(t *testing.T, user, action string) {
	t.Helper()
	_, _, err := e.events.SendMessage(&sarama.ProducerMessage{Topic: events, Key: sarama.StringEncoder(user), Value: sarama.StringEncoder(action)})
	if err != nil {
		t.Fatalf("produce event %s/%s: %v", user, action, err)
	}
}

// next reads the next event from the stream as a broker message.
func (e *env) next(t testing.TB) processor.Message[processor.KafkaPayload] {
	t.Helper()
	select {
	case m := <-e.stream.Messages():
		p := processor.KafkaPayload{Key: m.Key, Value: m.Value}
		return processor.NewBrokerMessage(p, processor.Partition{Topic: m.Topic, Index: m.Partition}, m.Offset, m.Timestamp)
	case err := <-e.stream.Errors():
		t.Fatalf("reading %s: %v", events, err)
	case <-time.After(wait):
		t.Fatalf("no event arrived on %s within %s", events, wait)
	}
	panic("unreachable")
}

// newView creates the View of the table; run starts it. The View is stopped, and
// waited for, and its clients closed when the test ends.
func (e *env) newView(t testing.TB) (view *goka.View, run func()) {
	t.Helper()
	clients := new(lookup.ViewClients)
	opts := append(clients.Options(saramaConfig(), topicManagerConfig()),
		goka.WithViewStorageBuilder(storage.MemoryBuilder()),
		goka.WithViewLogger(quiet))
	view, err := goka.NewView(e.brokers, profiles, new(codec.String), opts...)
	if err != nil {
		t.Fatalf("goka view: %v", err)
	}
	t.Cleanup(func() {
		if err := clients.Close(); err != nil {
			t.Errorf("close view clients: %v", err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := false
	t.Cleanup(func() {
		cancel()
		if !started {
			return
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("view stopped with: %v", err)
			}
		case <-time.After(wait):
			t.Errorf("view did not stop within %s of being cancelled", wait)
		}
	})
	return view, func() {
		started = true
		go func() { done <- view.Run(ctx) }()
	}
}

// awaitRecovered waits until the View has caught up with the table.
func awaitRecovered(t testing.TB, view *goka.View) {
	t.Helper()
	select {
	case <-view.WaitRunning():
	case <-time.After(wait):
		t.Fatalf("view of %s did not recover within %s", profiles, wait)
	}
}

// awaitValue polls the View until it holds want under key: the View applies table
// updates asynchronously and offers no signal for a single key.
func awaitValue(t *testing.T, view *goka.View, key, want string) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait)
	for {
		got, err := view.Get(key)
		if err == nil && got == want {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("view did not show %s=%q within %s; last read %v, %v", key, want, wait, got, err)
		}
	}
}

// collect is the terminal step: it keeps what reaches it.
type collect struct {
	got []processor.Message[string]
}

func (c *collect) Submit(m processor.Message[string]) error { c.got = append(c.got, m); return nil }
func (c *collect) Poll() error                              { return nil }
func (c *collect) Close()                                   {}
func (c *collect) Join(context.Context) error               { return nil }
func (c *collect) Terminate()                               {}

func (c *collect) payloads() []string {
	var out []string
	for _, m := range c.got {
		if m.Filtered() {
			out = append(out, "<filtered>")
			continue
		}
		out = append(out, m.Payload)
	}
	return out
}

func userKey(m processor.Message[processor.KafkaPayload]) (string, error) {
	return string(m.Payload.Key), nil
}

// greet names the user of an event and drops events of unknown users.
func greet(m processor.Message[processor.KafkaPayload], name string, found bool) (string, error) {
	if !found {
		return "", lookup.ErrDrop
	}
	return name + " " + string(m.Payload.Value), nil
}

func TestEnrichFromGokaView(t *testing.T) {
	e := newEnv(t)
	e.setName(t, "u1", "Ada")
	e.setName(t, "u2", "Grace")
	view, run := e.newView(t)

	out := &collect{}
	l := lookup.New(view, userKey, greet, out)

	e.produce(t, "u1", "login")
	first := e.next(t)
	if err := l.Submit(first); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit before the view recovered = %v, want ErrMessageRejected", err)
	}
	if len(out.got) != 0 {
		t.Fatalf("forwarded %v before the view recovered, want nothing", out.payloads())
	}

	run()
	awaitRecovered(t, view)
	// The processor offers a rejected message again; so does this test.
	if err := l.Submit(first); err != nil {
		t.Fatalf("Submit of the held message after recovery: %v", err)
	}
	for _, ev := range [][2]string{{"u2", "search"}, {"u9", "login"}} {
		e.produce(t, ev[0], ev[1])
		if err := l.Submit(e.next(t)); err != nil {
			t.Fatalf("Submit %v: %v", ev, err)
		}
	}

	e.setName(t, "u1", "Ada Lovelace")
	awaitValue(t, view, "u1", "Ada Lovelace")
	e.produce(t, "u1", "logout")
	if err := l.Submit(e.next(t)); err != nil {
		t.Fatalf("Submit after the table update: %v", err)
	}

	want := []string{"Ada login", "Grace search", "<filtered>", "Ada Lovelace logout"}
	got := out.payloads()
	if len(got) != len(want) {
		t.Fatalf("forwarded %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("forwarded %q, want %q", got, want)
		}
		if o, _ := out.got[i].Committable.Get(processor.Partition{Topic: events}); o != int64(i+1) {
			t.Fatalf("message %d commits offset %d of %s, want %d", i, o, events, i+1)
		}
	}
}

// BenchmarkLookupGokaView measures a lookup against a recovered goka View kept in
// memory: the strategy plus goka's hashing, storage read and codec decode.
func BenchmarkLookupGokaView(b *testing.B) {
	e := newEnv(b)
	e.setName(b, "u1", "Ada")
	view, run := e.newView(b)
	run()
	awaitRecovered(b, view)
	l := lookup.New(view, userKey, greet, processor.Strategy[string](strategies.NewNoop[string]()))
	msg := processor.NewBrokerMessage(processor.KafkaPayload{Key: []byte("u1"), Value: []byte("login")},
		processor.Partition{Topic: events}, 0, time.Time{})
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Submit(msg); err != nil {
			b.Fatal(err)
		}
	}
}
