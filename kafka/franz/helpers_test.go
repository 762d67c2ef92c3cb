package franz_test

// Test helpers: a StreamProcessor per member on franz.Consumer, an app factory
// that records every position it processes, and checks of committed offsets.
// Every wait is bounded by waitFor and re-checks its condition on change.

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/creekstream/creek/internal/await"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// waitFor bounds every wait of these tests.
const waitFor = 60 * time.Second

func TestMain(m *testing.M) {
	// go-metrics, which sarama (imported through package kafka) records into,
	// starts one ticker goroutine per process and never stops it.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

type payload = processor.KafkaPayload

type notifier = await.Notifier

func waitUntil(t *testing.T, n *notifier, what string, cond func() bool) {
	t.Helper()
	await.Until(t, n, waitFor, what, cond)
}

// seen counts how often each broker position was processed.
type seen struct {
	n      *notifier
	mu     sync.Mutex
	counts map[processor.Position]int
}

func newSeen(n *notifier) *seen { return &seen{n: n, counts: make(map[processor.Position]int)} }

func (s *seen) add(pos processor.Position) {
	s.mu.Lock()
	s.counts[pos]++
	s.mu.Unlock()
	s.n.Notify()
}

func (s *seen) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.counts)
}

func (s *seen) dups() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := 0
	for _, c := range s.counts {
		d += c - 1
	}
	return d
}

func (s *seen) has(pos processor.Position) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[pos] > 0
}

// app is the tests' factory: RunTask (recording, then fn) -> optional gate ->
// CommitOffsets. It records the chains it builds and closes.
type app struct {
	n    *notifier
	seen *seen
	fn   func(processor.Message[payload]) (payload, error)
	gate *gate

	mu         sync.Mutex
	created    int
	closed     int
	shutdowns  int
	assignment []processor.Partition
}

func newApp(n *notifier, s *seen) *app { return &app{n: n, seen: s} }

func (a *app) Create(commit processor.CommitFunc, ps []processor.Partition) (processor.Strategy[payload], error) {
	var next processor.Strategy[payload] = strategies.NewCommitOffsets[payload](commit)
	if a.gate != nil {
		next = &gated{next: next, g: a.gate}
	}
	task := strategies.NewRunTask(func(m processor.Message[payload]) (payload, error) {
		if pos, ok := m.Origin(); ok {
			a.seen.add(pos)
		}
		if a.fn != nil {
			return a.fn(m)
		}
		return m.Payload, nil
	}, next)
	a.mu.Lock()
	a.created++
	a.assignment = slices.Clone(ps)
	a.mu.Unlock()
	a.n.Notify()
	return &tracked{Strategy: task, a: a}, nil
}

func (a *app) PartitionsChanged(ps []processor.Partition) {
	a.mu.Lock()
	a.assignment = slices.Clone(ps)
	a.mu.Unlock()
	a.n.Notify()
}

func (a *app) Shutdown() {
	a.mu.Lock()
	a.shutdowns++
	a.mu.Unlock()
}

func (a *app) state() (created, closed int, assignment []processor.Partition) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.created, a.closed, slices.Clone(a.assignment)
}

// tracked counts Close calls of the chain it wraps.
type tracked struct {
	processor.Strategy[payload]
	a *app
}

func (s *tracked) Close() {
	s.a.mu.Lock()
	s.a.closed++
	s.a.assignment = nil
	s.a.mu.Unlock()
	s.a.n.Notify()
	s.Strategy.Close()
}

// gate makes a gated step reject while it is closed.
type gate struct {
	mu     sync.Mutex
	closed bool
}

func (g *gate) set(closed bool) {
	g.mu.Lock()
	g.closed = closed
	g.mu.Unlock()
}

type gated struct {
	next processor.Strategy[payload]
	g    *gate
}

func (s *gated) Submit(m processor.Message[payload]) error {
	s.g.mu.Lock()
	closed := s.g.closed
	s.g.mu.Unlock()
	if closed {
		return processor.ErrMessageRejected
	}
	return s.next.Submit(m)
}

func (s *gated) Poll() error                    { return s.next.Poll() }
func (s *gated) Close()                         { s.next.Close() }
func (s *gated) Join(ctx context.Context) error { return s.next.Join(ctx) }
func (s *gated) Terminate()                     { s.next.Terminate() }

// newConsumer returns a franz.Consumer for group with heartbeats short enough
// that rebalances are noticed quickly.
func newConsumer(t *testing.T, env *kafkatest.Env, group, assignor string) *franz.Consumer {
	t.Helper()
	c, err := franz.NewConsumer(franz.ConsumerConfig{
		Brokers:           env.Brokers,
		GroupID:           group,
		Assignor:          assignor,
		HeartbeatInterval: 200 * time.Millisecond,
		Logger:            zaptest.NewLogger(t),
		ClientOptions:     []kgo.Opt{kgo.FetchMaxWait(200 * time.Millisecond)},
	})
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return c
}

// member is one running StreamProcessor on franz.Consumer.
type member struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
}

// startMember runs a processor for topic in group with factory f; cfg's Topics,
// Logger, PollTimeout and JoinTimeout are filled in if unset. The test's cleanup
// stops it if the test did not.
func startMember(t *testing.T, env *kafkatest.Env, topic, group, assignor string, f processor.Factory[payload], cfg processor.Config[payload]) *member {
	t.Helper()
	c := newConsumer(t, env, group, assignor)
	cfg.Topics = []string{topic}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t)
	}
	if cfg.PollTimeout == 0 {
		cfg.PollTimeout = 100 * time.Millisecond
	}
	if cfg.JoinTimeout == 0 {
		cfg.JoinTimeout = 5 * time.Second
	}
	p, err := processor.New[payload](c, f, cfg)
	if err != nil {
		_ = c.Close()
		t.Fatalf("processor.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { m.done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-m.done:
		case <-time.After(waitFor):
			t.Errorf("Run did not return within %v of cancellation", waitFor)
		}
	})
	return m
}

// stop cancels Run and returns its error.
func (m *member) stop() error {
	m.t.Helper()
	m.cancel()
	select {
	case err := <-m.done:
		m.done <- err // for the cleanup
		return err
	case <-time.After(waitFor):
		m.t.Fatalf("timed out after %v waiting for Run to return", waitFor)
		return nil
	}
}

// produce writes n records to each of partitions 0..parts-1 of topic.
func produce(t *testing.T, env *kafkatest.Env, topic string, parts int32, n int, value func(p int32, i int) string) {
	t.Helper()
	var recs []*kgo.Record
	for p := range parts {
		for i := range n {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(value(p, i))})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := env.Client.Produce(ctx, recs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func plain(p int32, i int) string { return fmt.Sprintf("%d-%d", p, i) }

// committedEqualsEnds checks that group committed exactly the end offsets of topic.
func committedEqualsEnds(t *testing.T, env *kafkatest.Env, topic, group string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ends, err := env.Client.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := env.Client.CommittedOffsets(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range ends {
		if committed[p] != end {
			t.Errorf("partition %d: committed %d, end offset %d", p, committed[p], end)
		}
	}
}
