package integration

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
	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// waitFor bounds every wait of these tests.
const waitFor = 60 * time.Second

func TestMain(m *testing.M) {
	// go-metrics, which sarama records into, starts one ticker goroutine per process
	// and never stops it.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

type payload = processor.KafkaPayload

type notifier = await.Notifier

// waitUntil re-checks cond after every change n reports and fails the test, naming
// what it waited for, if cond does not hold within waitFor.
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

// distinct returns how many positions were seen; dups how many extra times.
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

// app is the factory of the tests: RunTask (recording what it sees, then fn) ->
// an optional gate -> CommitOffsets. It records the chains it builds and closes.
type app struct {
	n    *notifier
	seen *seen
	// fn runs on every message after it is recorded; nil passes the payload on.
	fn   func(context.Context, processor.Message[payload]) (payload, error)
	gate *gate

	mu          sync.Mutex
	created     int
	closed      int
	assignment  []processor.Partition
	shutdowns   int
	assignments [][]processor.Partition
}

func newApp(n *notifier, s *seen) *app { return &app{n: n, seen: s} }

func (a *app) Create(commit processor.CommitFunc, ps []processor.Partition) (processor.Strategy[payload], error) {
	var next processor.Strategy[payload] = strategies.NewCommitOffsets[payload](commit)
	if a.gate != nil {
		next = &gated{next: next, g: a.gate}
	}
	task := strategies.NewRunTask(func(ctx context.Context, m processor.Message[payload]) (payload, error) {
		if pos, ok := m.Origin(); ok {
			a.seen.add(pos)
		}
		if a.fn != nil {
			return a.fn(ctx, m)
		}
		return m.Payload, nil
	}, next)
	a.mu.Lock()
	a.created++
	a.setAssignment(ps)
	a.mu.Unlock()
	a.n.Notify()
	return &tracked[payload]{Strategy: task, a: a}, nil
}

func (a *app) PartitionsChanged(ps []processor.Partition) {
	a.mu.Lock()
	a.setAssignment(ps)
	a.mu.Unlock()
	a.n.Notify()
}

func (a *app) setAssignment(ps []processor.Partition) {
	a.assignment = slices.Clone(ps)
	a.assignments = append(a.assignments, a.assignment)
}

func (a *app) Shutdown() {
	a.mu.Lock()
	a.shutdowns++
	a.mu.Unlock()
}

// state returns the chains built and closed and the current assignment.
func (a *app) state() (created, closed int, assignment []processor.Partition) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.created, a.closed, slices.Clone(a.assignment)
}

// tracked counts Close calls of the chain it wraps.
type tracked[T any] struct {
	processor.Strategy[T]
	a *app
}

func (s *tracked[T]) Close() {
	s.a.mu.Lock()
	s.a.closed++
	s.a.assignment = nil
	s.a.mu.Unlock()
	s.a.n.Notify()
	s.Strategy.Close()
}

// gate is a switch that makes a gated step reject while it is closed.
type gate struct {
	mu       sync.Mutex
	closed   bool
	rejected int
}

func (g *gate) set(closed bool) {
	g.mu.Lock()
	g.closed = closed
	g.mu.Unlock()
}

// gated rejects every message while its gate is closed.
type gated struct {
	next processor.Strategy[payload]
	g    *gate
}

func (s *gated) Submit(m processor.Message[payload]) error {
	s.g.mu.Lock()
	closed := s.g.closed
	if closed {
		s.g.rejected++
	}
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

// member is one running StreamProcessor on the real adapter.
type member struct {
	t      *testing.T
	proc   *processor.StreamProcessor[payload]
	cancel context.CancelFunc
	done   chan error
}

// backend is one of creek's Kafka clients. Every scenario of these tests runs on
// each, so that one suite says what both backends guarantee.
type backend struct {
	name string
	// consumer returns a consumer of group, with group timings short enough that
	// rebalances show within tenths of a second.
	consumer func(t *testing.T, env *kafkatest.Env, group, assignor string) processor.Consumer[payload]
	// producer returns a producer the test's cleanup closes.
	producer func(t *testing.T, env *kafkatest.Env) kafka.Writer
}

var backends = []backend{
	{
		name: "sarama",
		consumer: func(t *testing.T, env *kafkatest.Env, group, assignor string) processor.Consumer[payload] {
			t.Helper()
			c, err := kafka.NewConsumer(kafka.ConsumerConfig{
				Brokers: env.Brokers, GroupID: group, Assignor: assignor,
				Sarama: kafkatest.SaramaConfig(), Logger: zaptest.NewLogger(t),
			})
			if err != nil {
				t.Fatalf("kafka.NewConsumer: %v", err)
			}
			return c
		},
		producer: func(t *testing.T, env *kafkatest.Env) kafka.Writer {
			t.Helper()
			p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: env.Brokers, Sarama: kafkatest.SaramaConfig()})
			if err != nil {
				t.Fatalf("kafka.NewProducer: %v", err)
			}
			t.Cleanup(func() { closeProducer(t, p.Close) })
			return p
		},
	},
	{
		name: "franz",
		consumer: func(t *testing.T, env *kafkatest.Env, group, assignor string) processor.Consumer[payload] {
			t.Helper()
			c, err := franz.NewConsumer(franz.ConsumerConfig{
				Brokers: env.Brokers, GroupID: group, Assignor: assignor,
				HeartbeatInterval: 200 * time.Millisecond,
				Logger:            zaptest.NewLogger(t),
				ClientOptions:     []kgo.Opt{kgo.FetchMaxWait(200 * time.Millisecond)},
			})
			if err != nil {
				t.Fatalf("franz.NewConsumer: %v", err)
			}
			return c
		},
		producer: func(t *testing.T, env *kafkatest.Env) kafka.Writer {
			t.Helper()
			p, err := franz.NewProducer(franz.ProducerConfig{Brokers: env.Brokers})
			if err != nil {
				t.Fatalf("franz.NewProducer: %v", err)
			}
			t.Cleanup(func() { closeProducer(t, p.Close) })
			return p
		},
	},
}

// eachBackend runs fn as a subtest on every backend.
func eachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

func closeProducer(t *testing.T, closeFn func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := closeFn(ctx); err != nil {
		t.Errorf("closing the producer: %v", err)
	}
}

// startMember runs a processor on b for topic in group with factory f; cfg's
// Topics and Logger are filled in. The test's cleanup stops it if the test did not.
func startMember(t *testing.T, b backend, env *kafkatest.Env, topic, group, assignor string, f processor.Factory[payload], cfg processor.Config[payload]) *member {
	t.Helper()
	cfg.Topics = []string{topic}
	return runMember(t, b.consumer(t, env, group, assignor), f, cfg)
}

// runMember runs a processor over c with factory f and cfg, whose Topics are set;
// Logger, PollTimeout and JoinTimeout get test defaults. The test's cleanup stops
// it if the test did not.
func runMember(t *testing.T, c processor.Consumer[payload], f processor.Factory[payload], cfg processor.Config[payload]) *member {
	t.Helper()
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
		c.Close()
		t.Fatalf("processor.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{t: t, proc: p, cancel: cancel, done: make(chan error, 1)}
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
	return m.result()
}

// result waits for Run to return.
func (m *member) result() error {
	m.t.Helper()
	select {
	case err := <-m.done:
		m.done <- err // for the cleanup
		return err
	case <-time.After(waitFor):
		m.t.Fatalf("timed out after %v waiting for Run to return", waitFor)
		return nil
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

// committedOf returns the group's committed offsets of topic by partition.
func committedOf(t *testing.T, env *kafkatest.Env, topic, group string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	committed, err := env.Client.CommittedOffsets(ctx, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	return committed
}
