package state_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lovoo/goka/storage"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/internal/await"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/state"
	"github.com/creekstream/creek/strategies"
)

// wait bounds every wait on the broker.
const wait = 60 * time.Second

var errCrash = errors.New("crash")

// observed is what the step after the count saw; the loop goroutine writes it and
// the test reads it.
type observed struct {
	mu       sync.Mutex
	n        await.Notifier
	seen     int
	replayed int
	// last is the highest offset seen per partition.
	last map[int32]int64
	// byMember counts the changes each member passed on.
	byMember map[string]int
}

func (o *observed) add(member string, pos processor.Position, replayed bool) {
	o.mu.Lock()
	o.seen++
	if o.byMember == nil {
		o.byMember = map[string]int{}
	}
	o.byMember[member]++
	if replayed {
		o.replayed++
	}
	if pos.Offset > o.last[pos.Partition.Index] {
		o.last[pos.Partition.Index] = pos.Offset
	}
	o.mu.Unlock()
	o.n.Notify()
}

// crasher passes Changes on and fails once it has taken limit of them (never for a
// negative limit), which ends the processor's run without a commit, as a crash.
type crasher[V any] struct {
	strategies.Noop[state.Change[processor.KafkaPayload, V]]
	next   processor.Strategy[state.Change[processor.KafkaPayload, V]]
	limit  int
	taken  int
	obs    *observed
	member string
}

func (c *crasher[V]) Submit(m processor.Message[state.Change[processor.KafkaPayload, V]]) error {
	if c.limit >= 0 && c.taken >= c.limit {
		return errCrash
	}
	if err := c.next.Submit(m); err != nil {
		return err
	}
	c.taken++
	if pos, ok := m.Origin(); ok {
		c.obs.add(c.member, pos, m.Payload.Replayed)
	}
	return nil
}
func (c *crasher[V]) Poll() error                    { return c.next.Poll() }
func (c *crasher[V]) Join(ctx context.Context) error { c.next.Close(); return c.next.Join(ctx) }
func (c *crasher[V]) Terminate()                     { c.next.Terminate() }

// input fills a topic of partitions partitions with n records over keys keys, key
// k always on partition k % partitions, and returns each key's count.
func input(t *testing.T, env *kafkatest.Env, topic string, partitions int32, n, keys int) map[string]int64 {
	t.Helper()
	want := map[string]int64{}
	recs := make([]*kgo.Record, 0, n)
	for i := range n {
		k := i * 7 % keys
		key := fmt.Sprintf("key-%03d", k)
		want[key]++
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(k) % partitions, Key: []byte(key), Value: []byte("x")})
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := env.Client.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	return want
}

// counts reads every partition of the changelog and returns each key's last count.
func counts(t *testing.T, cl *state.KafkaChangelog, partitions int32) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got := map[string]int64{}
	for p := range partitions {
		_, err := cl.Restore(ctx, p, 0, func(r state.Record) error {
			n, err := state.Int64{}.Decode(r.Value)
			got[string(r.Key)] = n
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return got
}

// countRun is one run of a counting processor in group.
type countRun struct {
	env     *kafkatest.Env
	topic   string
	group   string
	cfg     state.Config[int64]
	obs     *observed
	commitN int64
}

// assignSignal is a franz consumer that closes assigned the first time it is
// given partitions, so a test can wait for a member to hold some.
type assignSignal struct {
	*franz.Consumer
	once     sync.Once
	assigned chan struct{}
}

func (c *assignSignal) Subscribe(topics []string, cb processor.RebalanceCallbacks) error {
	onAssign := cb.OnAssign
	cb.OnAssign = func(added []processor.Partition) {
		onAssign(added)
		if len(added) > 0 {
			c.once.Do(func() { close(c.assigned) })
		}
	}
	return c.Consumer.Subscribe(topics, cb)
}

// start starts a processor whose crasher fails after limit changes (never for a
// negative limit) with the given assignor, and returns its run's result channel,
// the function that stops it gracefully and a channel closed once it holds a
// partition.
func (r countRun) start(t *testing.T, member string, limit int, assignor string) (<-chan error, context.CancelFunc, <-chan struct{}) {
	t.Helper()
	fc, err := franz.NewConsumer(franz.ConsumerConfig{Brokers: r.env.Brokers, GroupID: r.group, Assignor: assignor, HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := &assignSignal{Consumer: fc, assigned: make(chan struct{})}
	counted := state.Count(pipeline.FromKafka(), r.cfg, state.KafkaKey)
	out := pipeline.Through(counted, func(next processor.Strategy[state.Change[processor.KafkaPayload, int64]], _ []strategies.Option) (processor.Strategy[state.Change[processor.KafkaPayload, int64]], error) {
		return &crasher[int64]{next: next, limit: limit, obs: r.obs, member: member}, nil
	})
	p, err := processor.New(c, pipeline.Commit(out), processor.Config[processor.KafkaPayload]{
		Topics:       []string{r.topic},
		CommitPolicy: processor.CommitPolicy{MinMessages: r.commitN},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(cancel)
	return done, cancel, c.assigned
}

// crash runs a processor until its crasher fails after limit changes.
func (r countRun) crash(t *testing.T, limit int) {
	t.Helper()
	done, _, _ := r.start(t, "crashing", limit, "")
	if err := <-done; !errors.Is(err, errCrash) {
		t.Fatalf("run ended with %v, want the crash", err)
	}
}

// waitSeen waits until the changes of the last offset of every partition have
// been seen.
func (r countRun) waitSeen(t *testing.T, ends map[int32]int64) {
	t.Helper()
	await.Until(t, &r.obs.n, wait, "the last message of every partition", func() bool {
		r.obs.mu.Lock()
		defer r.obs.mu.Unlock()
		for p, end := range ends {
			if r.obs.last[p] < end-1 {
				return false
			}
		}
		return true
	})
}

// finish runs a processor until it has seen every partition's last message, then
// stops it gracefully.
func (r countRun) finish(t *testing.T, ends map[int32]int64) {
	t.Helper()
	done, stop, _ := r.start(t, "last", -1, "")
	r.waitSeen(t, ends)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestCountIsExactAfterCrashes counts on the in-process broker through crashes
// that leave hundreds of messages uncommitted, each run's member new to the group:
// with the offset check every count comes out exact and replays were skipped;
// without it the counts come out too high.
func TestCountIsExactAfterCrashes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reapply bool
		local   bool
	}{
		{name: "offset check, memory stores"},
		{name: "offset check, LevelDB stores", local: true},
		{name: "no offset check", reapply: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const partitions, n, keys = 3, 3000, 30
			env := kafkatest.New(t)
			topic := env.Topic(partitions)
			want := input(t, env, topic, partitions, n, keys)
			cl, err := state.NewKafkaChangelog(env.Name("changelog"), kgo.SeedBrokers(env.Brokers...))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cl.Close)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := cl.Create(ctx, partitions, 1); err != nil {
				t.Fatal(err)
			}
			ends, err := env.Client.EndOffsets(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			cfg := state.Config[int64]{Name: "counts", Changelog: cl, Storage: storage.MemoryBuilder(), ReapplyReplayed: tc.reapply}
			if tc.local {
				cfg.Storage, cfg.Dir = nil, t.TempDir()
			}
			r := countRun{env: env, topic: topic, group: env.Group(), cfg: cfg, obs: &observed{last: map[int32]int64{}}, commitN: 400}
			for range 3 {
				r.crash(t, 700)
			}
			r.finish(t, ends)

			got := counts(t, cl, partitions)
			over := 0
			for key, w := range want {
				if got[key] != w {
					over += int(got[key] - w)
					if !tc.reapply {
						t.Errorf("key %s counted %d, want %d", key, got[key], w)
					}
				}
			}
			t.Logf("seen %d changes for %d messages, %d of them replays skipped; overcount %d", r.obs.seen, n, r.obs.replayed, over)
			if tc.reapply && over <= 0 {
				t.Errorf("without the offset check the counts are %d over, want an overcount after replays", over)
			}
			if !tc.reapply && r.obs.replayed == 0 {
				t.Errorf("no replayed message was skipped; the crashes did not replay anything, so the test shows nothing")
			}
		})
	}
}

// TestCountIsExactWhenAMemberJoinsAndLeaves counts on the in-process broker while a
// second member joins, takes partitions with their state, and leaves again, under
// an eager and a cooperative assignor: the stores move with the partitions, and the
// counts come out exact.
func TestCountIsExactWhenAMemberJoinsAndLeaves(t *testing.T) {
	for _, assignor := range []string{franz.AssignorRange, franz.AssignorCooperativeSticky} {
		t.Run(assignor, func(t *testing.T) {
			const partitions, n, keys = 4, 2000, 40
			env := kafkatest.New(t)
			topic := env.Topic(partitions)
			cl, err := state.NewKafkaChangelog(env.Name("changelog"), kgo.SeedBrokers(env.Brokers...))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cl.Close)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := cl.Create(ctx, partitions, 1); err != nil {
				t.Fatal(err)
			}
			cfg := state.Config[int64]{Name: "counts", Changelog: cl, Storage: storage.MemoryBuilder()}
			r := countRun{env: env, topic: topic, group: env.Group(), cfg: cfg, obs: &observed{last: map[int32]int64{}}, commitN: 100}
			want := map[string]int64{}
			more := func() map[int32]int64 {
				for k, v := range input(t, env, topic, partitions, n, keys) {
					want[k] += v
				}
				ends, err := env.Client.EndOffsets(ctx, topic)
				if err != nil {
					t.Fatal(err)
				}
				return ends
			}
			ends := more()
			doneA, stopA, _ := r.start(t, "A", -1, assignor)
			r.waitSeen(t, ends)
			doneB, stopB, assignedB := r.start(t, "B", -1, assignor)
			// Input written before B holds a partition may all go to A, and then
			// B has nothing to count.
			select {
			case <-assignedB:
			case <-time.After(wait):
				t.Fatalf("member B was not given a partition within %v", wait)
			}
			ends = more()
			r.waitSeen(t, ends)
			stopB()
			if err := <-doneB; err != nil {
				t.Fatalf("member B: %v", err)
			}
			ends = more()
			r.waitSeen(t, ends)
			stopA()
			if err := <-doneA; err != nil {
				t.Fatalf("member A: %v", err)
			}
			r.obs.mu.Lock()
			byB := r.obs.byMember["B"]
			r.obs.mu.Unlock()
			if byB == 0 {
				t.Fatal("member B counted nothing; it never held a partition, so the test shows nothing")
			}
			got := counts(t, cl, partitions)
			for key, w := range want {
				if got[key] != w {
					t.Errorf("key %s counted %d, want %d", key, got[key], w)
				}
			}
			t.Logf("%d messages, %d changes seen (%d by the member that joined and left), %d replays skipped", 3*n, r.obs.seen, byB, r.obs.replayed)
		})
	}
}
