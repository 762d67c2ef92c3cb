package processor

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewValidatesConfig(t *testing.T) {
	ev := &events{n: &notifier{}}
	c := newFakeConsumer(ev)
	f := &fakeFactory{ev: ev}
	type custom []byte
	cases := []struct {
		name string
		cfg  Config[string]
		want string
	}{
		{"no topics", Config[string]{}, "Config.Topics is empty"},
		{"empty topic", Config[string]{Topics: []string{"a", ""}}, "Config.Topics[1] is empty"},
		{"bad commit policy", Config[string]{Topics: []string{"a"}, CommitPolicy: CommitPolicy{MinInterval: -1}}, "Config.CommitPolicy"},
		{"negative join timeout", Config[string]{Topics: []string{"a"}, JoinTimeout: -time.Second}, "Config.JoinTimeout is -1s"},
		{"negative pause after", Config[string]{Topics: []string{"a"}, BackpressurePauseAfter: -1}, "Config.BackpressurePauseAfter"},
		{"negative poll timeout", Config[string]{Topics: []string{"a"}, PollTimeout: -1}, "Config.PollTimeout"},
		{"exit without hard limit", Config[string]{Topics: []string{"a"}, Stuck: StuckConfig{ExitOnStuck: true}}, "needs Stuck.HardLimit"},
		{"hard limit below timeout", Config[string]{Topics: []string{"a"}, Stuck: StuckConfig{Timeout: time.Minute, HardLimit: time.Second}}, "Config.Stuck"},
		{"dlq without producer", Config[string]{Topics: []string{"a"}, DLQ: &DLQPolicy[string]{}}, "DLQPolicy.Producer is nil"},
		{"dlq without size", Config[string]{Topics: []string{"a"}, DLQ: &DLQPolicy[string]{Producer: &fakeDLQ{}}}, "DLQPolicy.Size is nil"},
		{"dlq negative ratio", Config[string]{Topics: []string{"a"}, DLQ: &DLQPolicy[string]{Producer: &fakeDLQ{}, MaxInvalidRatio: -1}}, "MaxInvalidRatio"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New[string](c, f, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: got error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := New[string](nil, f, Config[string]{Topics: []string{"a"}}); err == nil {
		t.Error("New with a nil consumer: want an error")
	}
	if _, err := New[string](c, nil, Config[string]{Topics: []string{"a"}}); err == nil {
		t.Error("New with a nil factory: want an error")
	}
	// Size is derived for payloads that have a Size method, and required otherwise.
	kp, err := New[KafkaPayload](nopConsumer[KafkaPayload]{}, nopFactory[KafkaPayload](), Config[KafkaPayload]{Topics: []string{"a"}, DLQ: &DLQPolicy[KafkaPayload]{Producer: nopDLQ[KafkaPayload]{}}})
	if err != nil {
		t.Fatalf("New[KafkaPayload] with a DLQ and no Size: %v", err)
	}
	if got := kp.cfg.DLQ.Size(KafkaPayload{Value: []byte("abc")}); got != 3 {
		t.Errorf("derived Size = %d, want 3", got)
	}
	if _, err := New[custom](nopConsumer[custom]{}, nopFactory[custom](), Config[custom]{Topics: []string{"a"}, DLQ: &DLQPolicy[custom]{Producer: nopDLQ[custom]{}}}); err == nil {
		t.Error("New[custom] with a DLQ and no Size: want an error")
	}
	p, err := New[string](c, f, Config[string]{Topics: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.JoinTimeout != 25*time.Second || p.cfg.BackpressurePauseAfter != 5*time.Second ||
		p.cfg.PollTimeout != time.Second || p.cfg.CommitPolicy != DefaultCommitPolicy() {
		t.Errorf("defaults not applied: %+v", p.cfg)
	}
}

func TestProcessesEveryMessageOnceAndCommits(t *testing.T) {
	h := newHarness(t, Config[string]{CommitPolicy: ImmediateCommit()}, nil)
	h.consumer.produce(p0, 0, 50)
	h.consumer.produce(p1, 0, 30)
	h.start()
	h.consumer.assign(p0, p1)
	h.waitUntil("offsets 50 and 30 committed", func() bool {
		return h.consumer.committedOffset(p0) == 50 && h.consumer.committedOffset(p1) == 30
	})
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := h.factory.strategy(t, 0).payloads()
	var want []string
	for o := range 50 {
		want = append(want, fmt.Sprintf("%s@%d", p0, o))
	}
	for o := range 30 {
		want = append(want, fmt.Sprintf("%s@%d", p1, o))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("submitted %d messages, want each of %d exactly once", len(got), len(want))
	}
}

func TestCommitPolicyIsApplied(t *testing.T) {
	h := newHarness(t, Config[string]{CommitPolicy: CommitPolicy{MinMessages: 3}}, nil)
	h.consumer.produce(p0, 0, 7)
	h.start()
	h.consumer.assign(p0)
	h.waitUntil("7 messages submitted", func() bool {
		return h.factory.count() == 1 && len(h.factory.strategy(t, 0).payloads()) == 7
	})
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Every third message commits; the seventh is committed by the forced commit of
	// the final join.
	want := []map[Partition]int64{{p0: 3}, {p0: 6}, {p0: 7}}
	got := h.consumer.commitList()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("commits = %v, want %v", got, want)
	}
}

func TestShutdownJoinsCommitsThenClosesConsumerThenFactory(t *testing.T) {
	h := newHarness(t, Config[string]{CommitPolicy: CommitPolicy{MinInterval: time.Hour}}, nil)
	h.consumer.produce(p0, 0, 5)
	h.start()
	h.consumer.assign(p0)
	h.waitUntil("5 messages submitted", func() bool {
		return h.factory.count() == 1 && len(h.factory.strategy(t, 0).payloads()) == 5
	})
	if n := len(h.consumer.commitList()); n != 0 {
		t.Fatalf("%d commits before shutdown with a one-hour policy, want 0", n)
	}
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	order := []string{"strategy 1 close", "strategy 1 join", "commit {t/0:5}", "consumer close", "factory shutdown"}
	last := -1
	for _, e := range order {
		i := h.ev.index(t, e)
		if i < last {
			t.Fatalf("%q happened out of order; events: %v", e, h.ev.all())
		}
		last = i
	}
	if h.ev.has("strategy 1 terminate") {
		t.Error("a clean shutdown terminated the strategy")
	}
}

func TestStrategyErrorStopsWithoutCommitting(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name   string
		setup  func(*fakeStrategy)
		check  func(t *testing.T, err error)
		assign bool
	}{
		{
			name: "submit error",
			setup: func(s *fakeStrategy) {
				s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
					if pos, _ := m.Origin(); pos.Offset == 3 {
						return boom
					}
					s.accept(m)
					return s.commit(m.Committable, false)
				}
			},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, boom) {
					t.Fatalf("Run = %v, want it to wrap %v", err, boom)
				}
			},
		},
		{
			name: "poll error",
			setup: func(s *fakeStrategy) {
				s.onPoll = func(s *fakeStrategy) error {
					if len(s.payloads()) == 3 {
						return boom
					}
					return nil
				}
			},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, boom) {
					t.Fatalf("Run = %v, want it to wrap %v", err, boom)
				}
			},
		},
		{
			name: "panic in submit",
			setup: func(s *fakeStrategy) {
				s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
					if pos, _ := m.Origin(); pos.Offset == 3 {
						panic("kaboom")
					}
					s.accept(m)
					return s.commit(m.Committable, false)
				}
			},
			check: func(t *testing.T, err error) {
				pe, ok := errors.AsType[*PanicError](err)
				if !ok || pe.Value != "kaboom" || len(pe.Stack) == 0 {
					t.Fatalf("Run = %v, want a *PanicError of %q with a stack", err, "kaboom")
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config[string]{CommitPolicy: CommitPolicy{MinInterval: time.Hour}}, tc.setup)
			h.consumer.produce(p0, 0, 10)
			h.start()
			h.consumer.assign(p0)
			tc.check(t, h.result())
			if got := h.consumer.commitList(); len(got) != 0 {
				t.Errorf("commits after a failure: %v, want none", got)
			}
			order := []string{"strategy 1 terminate", "consumer close", "factory shutdown"}
			last := -1
			for _, e := range order {
				i := h.ev.index(t, e)
				if i < last {
					t.Fatalf("%q happened out of order; events: %v", e, h.ev.all())
				}
				last = i
			}
			if h.ev.has("strategy 1 join") {
				t.Error("a failed run joined the strategy (which commits)")
			}
		})
	}
}

func TestFactoryErrorAndPanicInCallbackStopRun(t *testing.T) {
	h := newHarness(t, Config[string]{}, nil)
	h.factory.createErr = errors.New("no chain")
	h.start()
	h.consumer.assign(p0)
	err := h.result()
	if err == nil || !strings.Contains(err.Error(), "create strategy") || !errors.Is(err, h.factory.createErr) {
		t.Fatalf("Run = %v, want the factory's error wrapped with context", err)
	}
	h.ev.index(t, "factory shutdown")

	h2 := newHarness(t, Config[string]{}, func(s *fakeStrategy) { panic("in create") })
	h2.start()
	h2.consumer.assign(p0)
	if _, ok := errors.AsType[*PanicError](h2.result()); !ok {
		t.Fatal("Run did not return a *PanicError after a panic inside a rebalance callback")
	}
	h2.ev.index(t, "factory shutdown")
}

func TestMessageWithoutStrategyIsAStateError(t *testing.T) {
	h := newHarness(t, Config[string]{}, nil)
	h.consumer.produce(p0, 0, 1)
	h.consumer.mu.Lock()
	h.consumer.assigned[p0] = true // the consumer hands out p0 without telling the processor
	h.consumer.mu.Unlock()
	h.start()
	err := h.result()
	if err == nil || !strings.Contains(err.Error(), "state error") {
		t.Fatalf("Run = %v, want a state error", err)
	}
}

func TestPollErrorStopsRun(t *testing.T) {
	h := newHarness(t, Config[string]{}, nil)
	broken := errors.New("broker gone")
	h.consumer.pollErr = broken
	h.start()
	if err := h.result(); !errors.Is(err, broken) {
		t.Fatalf("Run = %v, want it to wrap %v", err, broken)
	}
}

func TestRunTwiceFails(t *testing.T) {
	h := newHarness(t, Config[string]{}, nil)
	h.start()
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if err := h.proc.Run(t.Context()); err == nil {
		t.Fatal("second Run returned nil")
	}
}

func TestMetricsGoThroughTheBuffer(t *testing.T) {
	rec := metricstest.NewRecorder()
	h := newHarness(t, Config[string]{Metrics: rec, CommitPolicy: ImmediateCommit()}, nil)
	h.consumer.produce(p0, 0, 3)
	h.start()
	h.consumer.assign(p0)
	h.waitUntil("offset 3 committed", func() bool { return h.consumer.committedOffset(p0) == 3 })
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{
		"consumer.partitions_assigned.count": 1,
		"consumer.run.create_strategy":       1,
		"consumer.run.close_strategy":        1,
	} {
		if got := rec.Counter(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if got := rec.Counter("consumer.commit_status", metrics.Tag{Key: "status", Value: "ok"}); got < 1 {
		t.Errorf("consumer.commit_status{status:ok} = %d, want >= 1", got)
	}
	if got := rec.Counter("consumer.run.count"); got < 4 {
		t.Errorf("consumer.run.count = %d, want >= 4", got)
	}
	if len(rec.Timings("consumer.poll.time")) == 0 {
		t.Error("no x.consumer.poll.time recorded")
	}
}

func TestCommitsOffsetsOfInterleavedPartitions(t *testing.T) {
	// Runs of messages alternate between partitions, so the loop's cache of the
	// partition in use (hot.go) changes hands; a policy counting messages sees the
	// staged offsets of both.
	h := newHarness(t, Config[string]{CommitPolicy: CommitPolicy{MinMessages: 4}}, nil)
	h.consumer.produce(p0, 0, 2)
	h.consumer.produce(p1, 0, 2)
	h.consumer.produce(p0, 2, 2)
	h.start()
	h.consumer.assign(p0, p1)
	h.waitUntil("6 messages submitted", func() bool {
		return h.factory.count() == 1 && len(h.factory.strategy(t, 0).payloads()) == 6
	})
	if err := h.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The fourth message commits both partitions; the last two go with the final join.
	want := []map[Partition]int64{{p0: 2, p1: 2}, {p0: 4}}
	if got := h.consumer.commitList(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("commits = %v, want %v", got, want)
	}
}
