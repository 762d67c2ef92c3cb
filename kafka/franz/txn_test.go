package franz_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
)

// sentinel is the value readCommitted stops at.
const sentinel = "sentinel"

func TestTxnConfigErrors(t *testing.T) {
	cfg := franz.ConsumerConfig{Brokers: []string{"127.0.0.1:1"}, GroupID: "g"}
	cases := []struct {
		name string
		txn  franz.TxnConfig
		want string
	}{
		{"no transactional id", franz.TxnConfig{}, "TransactionalID is empty"},
		{"negative timeout", franz.TxnConfig{TransactionalID: "x", TransactionTimeout: -time.Second}, "TransactionTimeout is -1s"},
		{"negative end timeout", franz.TxnConfig{TransactionalID: "x", EndTimeout: -time.Second}, "EndTimeout is -1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := franz.NewTxnConsumer(cfg, tc.txn)
			if err == nil || !strings.HasPrefix(err.Error(), "franz: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewTxnConsumer = %v; want an error starting %q that says %q", err, "franz: ", tc.want)
			}
		})
	}
	if _, err := franz.NewTxnConsumer(franz.ConsumerConfig{GroupID: "g"}, franz.TxnConfig{TransactionalID: "x"}); err == nil || !strings.Contains(err.Error(), "Brokers is empty") {
		t.Fatalf("NewTxnConsumer without brokers = %v; want the consumer configuration's error", err)
	}
}

// newTxnConsumer returns a TxnConsumer of group with short heartbeats.
func newTxnConsumer(t *testing.T, brokers []string, group, txnID string) *franz.TxnConsumer {
	t.Helper()
	return newTxnConsumerWith(t, brokers, group, txnID, "")
}

// newTxnConsumerWith is newTxnConsumer with an assignor.
func newTxnConsumerWith(t *testing.T, brokers []string, group, txnID, assignor string) *franz.TxnConsumer {
	t.Helper()
	c, err := franz.NewTxnConsumer(franz.ConsumerConfig{
		Brokers:           brokers,
		GroupID:           group,
		Assignor:          assignor,
		HeartbeatInterval: 200 * time.Millisecond,
		Logger:            zaptest.NewLogger(t),
		ClientOptions:     []kgo.Opt{kgo.FetchMaxWait(200 * time.Millisecond)},
	}, franz.TxnConfig{TransactionalID: txnID, TransactionTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// upper is the pipeline's transformation: the input value upper-cased.
func upper(_ context.Context, p processor.KafkaPayload) (processor.KafkaPayload, error) {
	return processor.KafkaPayload{Value: bytes.ToUpper(p.Value)}, nil
}

// startTransact runs a processor reading in into out through Transact, with a
// transaction every 7 messages or 100 ms. fn, if not nil, runs before upper.
func startTransact(t *testing.T, c *franz.TxnConsumer, in, out string, fn func(processor.KafkaPayload) error) *running {
	t.Helper()
	mapped := pipeline.Map(pipeline.FromKafka(), func(ctx context.Context, p processor.KafkaPayload) (processor.KafkaPayload, error) {
		if fn != nil {
			if err := fn(p); err != nil {
				return p, err
			}
		}
		return upper(ctx, p)
	})
	p, err := processor.New(c, pipeline.Transact(mapped, c, out), processor.Config[processor.KafkaPayload]{
		Topics:       []string{in},
		Logger:       zaptest.NewLogger(t),
		CommitPolicy: processor.CommitPolicy{MinMessages: 7, MinInterval: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	return r
}

// running is a processor started by startTransact.
type running struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
}

// stop asks the processor to stop and returns Run's result.
func (r *running) stop() error {
	r.cancel()
	return r.wait()
}

// wait returns Run's result, failing the test if Run does not return in time.
func (r *running) wait() error {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.cancel()
		return err
	case <-time.After(waitFor):
		r.cancel()
		r.t.Fatalf("the processor did not stop within %s", waitFor)
		return nil
	}
}

// readCommitted writes a sentinel to each partition of topic and reads topic with
// read_committed isolation up to the sentinels, returning the values before them.
// Every transaction that ended before the sentinels were written is settled by
// then; one left open makes it fail when ctx ends.
func readCommitted(ctx context.Context, brokers []string, topic string, partitions int32) ([]string, error) {
	return readUpToSentinel(ctx, brokers, topic, partitions, kgo.ReadCommitted())
}

func readUpToSentinel(ctx context.Context, brokers []string, topic string, partitions int32, iso kgo.IsolationLevel) ([]string, error) {
	w, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, err
	}
	defer w.Close()
	for p := range partitions {
		if err := w.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte(sentinel)}).FirstErr(); err != nil {
			return nil, fmt.Errorf("write sentinel: %w", err)
		}
	}
	r, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []string
	seen := 0
	for seen < int(partitions) {
		fs := r.PollFetches(ctx)
		if ctx.Err() != nil {
			return out, fmt.Errorf("read %s: %d of %d sentinels after %d records: %w", topic, seen, partitions, len(out), ctx.Err())
		}
		if err := fs.Err0(); err != nil {
			return out, err
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if string(rec.Value) == sentinel {
				seen++
			} else {
				out = append(out, string(rec.Value))
			}
		})
	}
	return out, nil
}

// waitCommitted waits until group's committed offsets of topic are want on every
// one of partitions.
func waitCommitted(t *testing.T, env *kafkatest.Env, group, topic string, partitions int32, want int64) {
	t.Helper()
	ctx := env.Context(waitFor)
	for {
		// A broker just started may not have a coordinator yet; that is only
		// "not yet".
		got, err := env.Client.CommittedOffsets(ctx, group, topic)
		done := err == nil
		for p := range partitions {
			done = done && got[p] == want
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("committed offsets of %s = %v (last error %v); want %d on each of %d partitions within %s", topic, got, err, want, partitions, waitFor)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// exactlyOnce checks that got holds the upper-cased value of every one of n
// inputs per partition exactly once.
func exactlyOnce(t *testing.T, got []string, partitions int32, n int) {
	t.Helper()
	count := make(map[string]int)
	for _, v := range got {
		count[v]++
	}
	var lost, dup int
	for p := range partitions {
		for i := range n {
			switch c := count[strings.ToUpper(plain(p, i))]; {
			case c == 0:
				lost++
			case c > 1:
				dup += c - 1
			}
		}
	}
	if lost > 0 || dup > 0 || len(got) != int(partitions)*n {
		t.Fatalf("read_committed output: %d records for %d inputs, %d lost, %d duplicates; want each once", len(got), int(partitions)*n, lost, dup)
	}
}

func TestTransactCommitsOutputsWithTheirOffsets(t *testing.T) {
	env := kafkatest.New(t)
	const parts, n = 3, 20
	in, out, group := env.Topic(parts), env.Topic(1), env.Group()
	env.Fill(in, parts, n, plain)

	c := newTxnConsumer(t, env.Brokers, group, env.Name("txn"))
	run := startTransact(t, c, in, out, nil)
	waitCommitted(t, env, group, in, parts, n)
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, err := readCommitted(env.Context(waitFor), env.Brokers, out, 1)
	if err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, got, parts, n)
}

// TestAnAbortedTransactionLeavesNothingVisible fences the member's transactional
// offset commit, as the group does to a zombie: the transaction aborts, the
// processor stops with ErrTxnAborted, a read_committed reader sees none of the
// outputs that reached the log, and the group has no committed offset.
func TestAnAbortedTransactionLeavesNothingVisible(t *testing.T) {
	cluster, err := kafkatest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	env := kafkatest.NewOn(t, cluster)
	const parts, n = 2, 10
	in, out, group := env.Topic(parts), env.Topic(1), env.Group()
	env.Fill(in, parts, n, plain)

	var fenced atomic.Int32
	cluster.ControlKey(kmsg.TxnOffsetCommit.Int16(), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		req := kr.(*kmsg.TxnOffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewTxnOffsetCommitResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.IllegalGeneration.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		fenced.Add(1)
		return resp, nil, true
	})

	c := newTxnConsumer(t, env.Brokers, group, env.Name("txn"))
	err = startTransact(t, c, in, out, nil).wait()
	if err == nil {
		t.Fatal("Run returned nil; want the aborted transaction's error")
	}
	if !errors.Is(err, franz.ErrTxnAborted) || !errors.Is(err, kerr.IllegalGeneration) {
		t.Fatalf("Run = %v; want an error wrapping franz.ErrTxnAborted and ILLEGAL_GENERATION", err)
	}
	if fenced.Load() == 0 {
		t.Fatal("no transactional offset commit reached the broker")
	}
	ctx := env.Context(waitFor)
	uncommitted, err := readUpToSentinel(ctx, env.Brokers, out, 1, kgo.ReadUncommitted())
	if err != nil {
		t.Fatal(err)
	}
	if len(uncommitted) == 0 {
		t.Fatal("no output of the aborted transaction reached the log; the check below would prove nothing")
	}
	got, err := readCommitted(ctx, env.Brokers, out, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("a read_committed reader sees %d records of the aborted transaction (%q); want none", len(got), got)
	}
	committed, err := env.Client.CommittedOffsets(ctx, group, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(committed) != 0 {
		t.Fatalf("group %s committed %v after the abort; want nothing", group, committed)
	}
}

// rebalanced reports whether err is a transaction aborted because the group's
// generation moved on while its offsets were committed.
func rebalanced(err error) bool {
	return errors.Is(err, franz.ErrTxnAborted) &&
		(errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.UnknownMemberID))
}

// errInjected is the failure TestTransactExactlyOnce injects into the pipeline.
var errInjected = errors.New("injected failure")

// member runs a processor of one group member and starts it again, with a new
// consumer, each time it fails with errInjected, or with a transaction aborted
// because the group moved on to a new generation while it committed (a member
// joining or leaving at that moment, under an eager assignor: a cooperative
// member that keeps its partitions commits again in the new generation), until
// stop is called. Restarting after ErrTxnAborted is what a service's loop
// does (docs/processor.md).
type member struct {
	t     *testing.T
	start func() *running
	quit  chan struct{}
	ended chan error
	once  sync.Once
	err   error
	// rebalanceAborts counts the restarts after a transaction a rebalance aborted.
	rebalanceAborts atomic.Int32
}

func startMember(t *testing.T, start func() *running) *member {
	m := &member{t: t, start: start, quit: make(chan struct{}), ended: make(chan error, 1)}
	go func() {
		for {
			run := m.start()
			select {
			case err := <-run.done:
				if !errors.Is(err, errInjected) && !rebalanced(err) {
					m.ended <- fmt.Errorf("member stopped with %v, want only injected failures and aborts by a rebalance", err)
					return
				}
				if rebalanced(err) {
					m.rebalanceAborts.Add(1)
					m.t.Logf("member restarts after a transaction the group's rebalance aborted: %v", err)
				}
			case <-m.quit:
				err := run.stop()
				if errors.Is(err, errInjected) || rebalanced(err) {
					// It failed as it was asked to stop; what it had not committed
					// is read again by the other member.
					err = nil
				}
				m.ended <- err
				return
			}
		}
	}()
	// A test that fails early still stops its members before it ends.
	t.Cleanup(func() { _ = m.stop() })
	return m
}

// stop stops the member's current processor and returns its result.
func (m *member) stop() error {
	m.once.Do(func() {
		close(m.quit)
		select {
		case m.err = <-m.ended:
		case <-time.After(waitFor):
			m.err = fmt.Errorf("member did not stop within %s", waitFor)
		}
	})
	return m.err
}

// injector fails the pipeline once at each of the given input values and
// signals every failure on hit.
// It also closes all once total distinct values have passed.
type injector struct {
	mu    sync.Mutex
	left  map[string]bool
	hit   chan struct{}
	seen  map[string]bool
	total int
	all   chan struct{}
}

func newInjector(total int, values ...string) *injector {
	in := &injector{left: make(map[string]bool), hit: make(chan struct{}, len(values)),
		seen: make(map[string]bool), total: total, all: make(chan struct{})}
	for _, v := range values {
		in.left[v] = true
	}
	return in
}

func (in *injector) check(p processor.KafkaPayload) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	v := string(p.Value)
	if in.left[v] {
		delete(in.left, v)
		in.hit <- struct{}{}
		return fmt.Errorf("%w at %s", errInjected, v)
	}
	if !in.seen[v] {
		in.seen[v] = true
		if len(in.seen) == in.total {
			close(in.all)
		}
	}
	return nil
}

// awaitHit waits for the next injected failure.
func (in *injector) awaitHit(t *testing.T) {
	t.Helper()
	receive(t, in.hit, "the next injected failure")
}

// TestTransactExactlyOnce reads ids through two members, fails the pipeline
// three times (each failure stops a member's processor mid-transaction, and the
// member starts again), lets the second member join and leave, under the range
// and the cooperative-sticky assignor, and finds every id exactly once in the
// read_committed output. The same run with Produce and
// plain commits finds duplicates, so the check can fail.
func TestTransactExactlyOnce(t *testing.T) {
	for _, tc := range []struct {
		transactional bool
		assignor      string
	}{{true, franz.AssignorRange}, {true, franz.AssignorCooperativeSticky}, {false, franz.AssignorRange}} {
		transactional := tc.transactional
		name := map[bool]string{true: "transactions", false: "at least once"}[transactional] + "/" + tc.assignor
		t.Run(name, func(t *testing.T) {
			env := kafkatest.New(t)
			const parts, n = 4, 150
			in, out, group := env.Topic(parts), env.Topic(2), env.Group()
			env.Fill(in, parts, n, plain)
			inj := newInjector(parts*n, plain(0, 40), plain(1, 90), plain(3, 130))

			start := func(id string) func() *running {
				// A member keeps its transactional id across restarts, so that
				// a restart fences whatever its predecessor left open.
				txnID := env.Name("txn-" + id)
				return func() *running {
					if transactional {
						return startTransact(t, newTxnConsumerWith(t, env.Brokers, group, txnID, tc.assignor), in, out, inj.check)
					}
					return startAtLeastOnce(t, env, group, tc.assignor, in, out, inj.check)
				}
			}
			a := startMember(t, start("a"))
			inj.awaitHit(t)
			b := startMember(t, start("b"))
			inj.awaitHit(t)
			if err := b.stop(); err != nil {
				t.Fatalf("member b: %v", err)
			}
			inj.awaitHit(t)
			if transactional {
				waitCommitted(t, env, group, in, parts, n)
			} else {
				// Nothing is committed before a stops, which commits what it
				// produced: every input, once all have passed the pipeline.
				select {
				case <-inj.all:
				case <-time.After(waitFor):
					t.Fatalf("not every input reached the pipeline within %s", waitFor)
				}
			}
			if err := a.stop(); err != nil {
				t.Fatalf("member a: %v", err)
			}
			got, err := readCommitted(env.Context(waitFor), env.Brokers, out, 2)
			if err != nil {
				t.Fatal(err)
			}
			if transactional {
				exactlyOnce(t, got, parts, n)
				// A cooperative member keeps its partitions through the rebalances
				// here, so it commits again in the new generation instead.
				if n := a.rebalanceAborts.Load() + b.rebalanceAborts.Load(); tc.assignor == franz.AssignorCooperativeSticky && n > 0 {
					t.Errorf("%d transactions aborted by a rebalance under cooperative-sticky; want none", n)
				}
				return
			}
			count := make(map[string]int)
			for _, v := range got {
				count[v]++
			}
			lost, dup := 0, 0
			for p := range int32(parts) {
				for i := range n {
					switch c := count[strings.ToUpper(plain(p, i))]; {
					case c == 0:
						lost++
					case c > 1:
						dup += c - 1
					}
				}
			}
			t.Logf("at least once: %d records for %d inputs, %d lost, %d duplicates", len(got), parts*n, lost, dup)
			if lost > 0 || dup == 0 {
				t.Fatalf("at least once lost %d and duplicated %d; want none lost and some duplicated, or the exactly-once check could not fail", lost, dup)
			}
		})
	}
}

// startAtLeastOnce runs the pipeline of startTransact with Produce and plain
// commits, committing only at rebalances and shutdown so that a failure
// duplicates what was produced since.
func startAtLeastOnce(t *testing.T, env *kafkatest.Env, group, assignor, in, out string, fn func(processor.KafkaPayload) error) *running {
	t.Helper()
	c := newConsumer(t, env, group, assignor)
	prod, err := franz.NewProducer(franz.ProducerConfig{Brokers: env.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	mapped := pipeline.Map(pipeline.FromKafka(), func(ctx context.Context, p processor.KafkaPayload) (processor.KafkaPayload, error) {
		if err := fn(p); err != nil {
			return p, err
		}
		return upper(ctx, p)
	})
	p, err := processor.New(c, pipeline.Commit(pipeline.Produce(mapped, prod, out)), processor.Config[processor.KafkaPayload]{
		Topics:       []string{in},
		Logger:       zaptest.NewLogger(t),
		CommitPolicy: processor.CommitPolicy{MinInterval: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := p.Run(ctx)
		if cerr := prod.Close(context.Background()); cerr != nil && err == nil {
			err = cerr
		}
		r.done <- err
	}()
	return r
}

// slowDLQ resolves every delivery after delay, counting them.
type slowDLQ struct {
	delay time.Duration
	n     atomic.Int32
}

func (d *slowDLQ) Produce(_ context.Context, msg processor.Message[processor.KafkaPayload], _ *processor.InvalidMessageError) *processor.Delivery {
	del := processor.NewDelivery()
	d.n.Add(1)
	time.AfterFunc(d.delay, func() { del.Resolve(processor.Position{}, nil) })
	return del
}

// TestTheDLQHoldsATransactionBack sends invalid messages to a dead-letter queue
// whose deliveries take a while: the processor then commits only up to them while
// the transaction holds later outputs, Commit refuses that (ErrTxnAhead) and
// keeps the transaction open, and a later commit covers it. Every valid input
// comes out once.
func TestTheDLQHoldsATransactionBack(t *testing.T) {
	env := kafkatest.New(t)
	const parts, n = 2, 30
	in, out, group := env.Topic(parts), env.Topic(1), env.Group()
	env.Fill(in, parts, n, plain)
	bad := map[string]bool{plain(0, 5): true, plain(1, 17): true}

	c := newTxnConsumer(t, env.Brokers, group, env.Name("txn"))
	core, logs := observer.New(zap.WarnLevel)
	dlq := &slowDLQ{delay: 300 * time.Millisecond}
	mapped := pipeline.Map(pipeline.FromKafka(), func(ctx context.Context, p processor.KafkaPayload) (processor.KafkaPayload, error) {
		if bad[string(p.Value)] {
			return p, pipeline.Invalid(errors.New("bad input"))
		}
		return upper(ctx, p)
	})
	p, err := processor.New(c, pipeline.Transact(mapped, c, out), processor.Config[processor.KafkaPayload]{
		Topics:       []string{in},
		Logger:       zap.New(core),
		CommitPolicy: processor.ImmediateCommit(),
		DLQ:          &processor.DLQPolicy[processor.KafkaPayload]{Producer: dlq},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- p.Run(ctx) }()
	waitCommitted(t, env, group, in, parts, n)
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := dlq.n.Load(); got != int32(len(bad)) {
		t.Errorf("%d messages dead-lettered, want %d", got, len(bad))
	}
	if logs.FilterFieldKey("error").Filter(func(e observer.LoggedEntry) bool {
		for _, f := range e.Context {
			if err, ok := f.Interface.(error); ok && errors.Is(err, franz.ErrTxnAhead) {
				return true
			}
		}
		return false
	}).Len() == 0 {
		t.Errorf("no commit was refused with ErrTxnAhead; the test did not hold a transaction back. Logs: %v", logs.All())
	}
	got, err := readCommitted(env.Context(waitFor), env.Brokers, out, 1)
	if err != nil {
		t.Fatal(err)
	}
	count := make(map[string]int)
	for _, v := range got {
		count[v]++
	}
	for p := range int32(parts) {
		for i := range n {
			want := 1
			if bad[plain(p, i)] {
				want = 0
			}
			if c := count[strings.ToUpper(plain(p, i))]; c != want {
				t.Errorf("%s came out %d times, want %d", plain(p, i), c, want)
			}
		}
	}
}

// TestAnIdleStreamsLastTransactionIsCommitted stops the input after a few
// messages and waits for their transaction with a PollTimeout far longer than the
// wait: the loop polls through PollRun, whose wait must be bounded while a
// transaction is open, or the transaction stays open until the poll gives up.
func TestAnIdleStreamsLastTransactionIsCommitted(t *testing.T) {
	env := kafkatest.New(t)
	in, out, group := env.Topic(1), env.Topic(1), env.Group()
	c := newTxnConsumer(t, env.Brokers, group, env.Name("txn"))
	mapped := pipeline.Map(pipeline.FromKafka(), upper)
	p, err := processor.New(c, pipeline.Transact(mapped, c, out), processor.Config[processor.KafkaPayload]{
		Topics:       []string{in},
		Logger:       zaptest.NewLogger(t),
		PollTimeout:  10 * time.Minute,
		CommitPolicy: processor.CommitPolicy{MinMessages: 1000, MinInterval: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- p.Run(ctx) }()

	// Two rounds: the second's messages arrive after a commit, so its transaction
	// is due only once the loop has been waiting for more input.
	env.Fill(in, 1, 5, plain)
	waitCommitted(t, env, group, in, 1, 5)
	env.Fill(in, 1, 5, plain)
	waitCommitted(t, env, group, in, 1, 10)
	if err := run.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
