package processor_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewValidatesConfig(t *testing.T) {
	c := processortest.NewConsumer[string](nil)
	f := processortest.NewFactory[string](nil, nil)
	type custom []byte
	cases := []struct {
		name string
		cfg  processor.Config[string]
		want string
	}{
		{"no topics", processor.Config[string]{}, "Config.Topics is empty"},
		{"empty topic", processor.Config[string]{Topics: []string{"a", ""}}, "Config.Topics[1] is empty"},
		{"bad commit policy", processor.Config[string]{Topics: []string{"a"}, CommitPolicy: processor.CommitPolicy{MinInterval: -1}}, "Config.CommitPolicy"},
		{"negative join timeout", processor.Config[string]{Topics: []string{"a"}, JoinTimeout: -time.Second}, "Config.JoinTimeout is -1s"},
		{"negative pause after", processor.Config[string]{Topics: []string{"a"}, BackpressurePauseAfter: -1}, "Config.BackpressurePauseAfter"},
		{"negative poll timeout", processor.Config[string]{Topics: []string{"a"}, PollTimeout: -1}, "Config.PollTimeout"},
		{"exit without hard limit", processor.Config[string]{Topics: []string{"a"}, Stuck: processor.StuckConfig{ExitOnStuck: true}}, "needs Stuck.HardLimit"},
		{"hard limit below timeout", processor.Config[string]{Topics: []string{"a"}, Stuck: processor.StuckConfig{Timeout: time.Minute, HardLimit: time.Second}}, "Config.Stuck"},
		{"dlq without producer", processor.Config[string]{Topics: []string{"a"}, DLQ: &processor.DLQPolicy[string]{}}, "DLQPolicy.Producer is nil"},
		{"dlq without size", processor.Config[string]{Topics: []string{"a"}, DLQ: &processor.DLQPolicy[string]{Producer: &fakeDLQ{}}}, "DLQPolicy.Size is nil"},
		{"dlq negative ratio", processor.Config[string]{Topics: []string{"a"}, DLQ: &processor.DLQPolicy[string]{Producer: &fakeDLQ{}, MaxInvalidRatio: -1}}, "MaxInvalidRatio"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := processor.New[string](c, f, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: got error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := processor.New[string](nil, f, processor.Config[string]{Topics: []string{"a"}}); err == nil {
		t.Error("New with a nil consumer: want an error")
	}
	if _, err := processor.New[string](c, nil, processor.Config[string]{Topics: []string{"a"}}); err == nil {
		t.Error("New with a nil factory: want an error")
	}
	// Size is derived for payloads that have a Size method, and required otherwise.
	kp, err := processor.New[processor.KafkaPayload](nopConsumer[processor.KafkaPayload]{}, nopFactory[processor.KafkaPayload](), processor.Config[processor.KafkaPayload]{Topics: []string{"a"}, DLQ: &processor.DLQPolicy[processor.KafkaPayload]{Producer: nopDLQ[processor.KafkaPayload]{}}})
	if err != nil {
		t.Fatalf("New[KafkaPayload] with a DLQ and no Size: %v", err)
	}
	if got := processor.ConfigOf(kp).DLQ.Size(processor.KafkaPayload{Value: []byte("abc")}); got != 3 {
		t.Errorf("derived Size = %d, want 3", got)
	}
	if _, err := processor.New[custom](nopConsumer[custom]{}, nopFactory[custom](), processor.Config[custom]{Topics: []string{"a"}, DLQ: &processor.DLQPolicy[custom]{Producer: nopDLQ[custom]{}}}); err == nil {
		t.Error("New[custom] with a DLQ and no Size: want an error")
	}
	p, err := processor.New[string](c, f, processor.Config[string]{Topics: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := processor.ConfigOf(p); cfg.JoinTimeout != 25*time.Second || cfg.BackpressurePauseAfter != 5*time.Second ||
		cfg.PollTimeout != time.Second || cfg.CommitPolicy != processor.DefaultCommitPolicy() {
		t.Errorf("defaults not applied: %+v", cfg)
	}
}

func TestProcessesEveryMessageOnceAndCommits(t *testing.T) {
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit()}, nil)
	h.produce(p0, 0, 50)
	h.produce(p1, 0, 30)
	h.Start()
	h.Consumer.Assign(p0, p1)
	h.WaitUntil("offsets 50 and 30 committed", func() bool {
		return h.Consumer.Committed(p0) == 50 && h.Consumer.Committed(p1) == 30
	})
	if err := h.Stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := h.factory.Strategy(t, 0).Payloads()
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
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.CommitPolicy{MinMessages: 3}}, nil)
	h.produce(p0, 0, 7)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("7 messages submitted", func() bool {
		return h.factory.Count() == 1 && len(h.factory.Strategy(t, 0).Payloads()) == 7
	})
	if err := h.Stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Every third message commits; the seventh is committed by the forced commit of
	// the final join.
	want := []map[processor.Partition]int64{{p0: 3}, {p0: 6}, {p0: 7}}
	got := h.Consumer.Commits()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("commits = %v, want %v", got, want)
	}
}

func TestShutdownJoinsCommitsThenClosesConsumerThenFactory(t *testing.T) {
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.CommitPolicy{MinInterval: time.Hour}}, nil)
	h.produce(p0, 0, 5)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("5 messages submitted", func() bool {
		return h.factory.Count() == 1 && len(h.factory.Strategy(t, 0).Payloads()) == 5
	})
	if n := len(h.Consumer.Commits()); n != 0 {
		t.Fatalf("%d commits before shutdown with a one-hour policy, want 0", n)
	}
	if err := h.Stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	order := []string{"strategy 1 close", "strategy 1 join", "commit {t/0:5}", "consumer close", "factory shutdown"}
	last := -1
	for _, e := range order {
		i := h.Events.Index(t, e)
		if i < last {
			t.Fatalf("%q happened out of order; events: %v", e, h.Events.All())
		}
		last = i
	}
	if h.Events.Has("strategy 1 terminate") {
		t.Error("a clean shutdown terminated the strategy")
	}
}

func TestStrategyErrorStopsWithoutCommitting(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name   string
		setup  func(*processortest.Strategy[string])
		check  func(t *testing.T, err error)
		assign bool
	}{
		{
			name: "submit error",
			setup: func(s *processortest.Strategy[string]) {
				s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
					if pos, _ := m.Origin(); pos.Offset == 3 {
						return boom
					}
					s.Accept(m)
					return s.Commit(m.Committable, false)
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
			setup: func(s *processortest.Strategy[string]) {
				s.OnPoll = func(s *processortest.Strategy[string]) error {
					// The strategy is polled once per run, so it may have more.
					if len(s.Payloads()) >= 3 {
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
			setup: func(s *processortest.Strategy[string]) {
				s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
					if pos, _ := m.Origin(); pos.Offset == 3 {
						panic("kaboom")
					}
					s.Accept(m)
					return s.Commit(m.Committable, false)
				}
			},
			check: func(t *testing.T, err error) {
				pe, ok := errors.AsType[*processor.PanicError](err)
				if !ok || pe.Value != "kaboom" || len(pe.Stack) == 0 {
					t.Fatalf("Run = %v, want a *processor.PanicError of %q with a stack", err, "kaboom")
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, processor.Config[string]{CommitPolicy: processor.CommitPolicy{MinInterval: time.Hour}}, tc.setup)
			h.produce(p0, 0, 10)
			h.Start()
			h.Consumer.Assign(p0)
			tc.check(t, h.Wait())
			if got := h.Consumer.Commits(); len(got) != 0 {
				t.Errorf("commits after a failure: %v, want none", got)
			}
			order := []string{"strategy 1 terminate", "consumer close", "factory shutdown"}
			last := -1
			for _, e := range order {
				i := h.Events.Index(t, e)
				if i < last {
					t.Fatalf("%q happened out of order; events: %v", e, h.Events.All())
				}
				last = i
			}
			if h.Events.Has("strategy 1 join") {
				t.Error("a failed run joined the strategy (which commits)")
			}
		})
	}
}

func TestFactoryErrorAndPanicInCallbackStopRun(t *testing.T) {
	h := newHarness(t, processor.Config[string]{}, nil)
	createErr := errors.New("no chain")
	h.factory.SetCreateError(createErr)
	h.Start()
	h.Consumer.Assign(p0)
	err := h.Wait()
	if err == nil || !strings.Contains(err.Error(), "create strategy") || !errors.Is(err, createErr) {
		t.Fatalf("Run = %v, want the factory's error wrapped with context", err)
	}
	h.Events.Index(t, "factory shutdown")

	h2 := newHarness(t, processor.Config[string]{}, func(s *processortest.Strategy[string]) { panic("in create") })
	h2.Start()
	h2.Consumer.Assign(p0)
	if _, ok := errors.AsType[*processor.PanicError](h2.Wait()); !ok {
		t.Fatal("Run did not return a *processor.PanicError after a panic inside a rebalance callback")
	}
	h2.Events.Index(t, "factory shutdown")
}

func TestMessageWithoutStrategyIsAStateError(t *testing.T) {
	h := newHarness(t, processor.Config[string]{}, nil)
	h.produce(p0, 0, 1)
	h.Consumer.AssignSilently(p0) // the consumer hands out p0 without telling the processor
	h.Start()
	err := h.Wait()
	if err == nil || !strings.Contains(err.Error(), "state error") {
		t.Fatalf("Run = %v, want a state error", err)
	}
}

func TestPollErrorStopsRun(t *testing.T) {
	h := newHarness(t, processor.Config[string]{}, nil)
	broken := errors.New("broker gone")
	h.Consumer.SetPollError(broken)
	h.Start()
	if err := h.Wait(); !errors.Is(err, broken) {
		t.Fatalf("Run = %v, want it to wrap %v", err, broken)
	}
}

func TestRunTwiceFails(t *testing.T) {
	h := newHarness(t, processor.Config[string]{}, nil)
	h.Start()
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := h.Processor.Run(t.Context()); err == nil {
		t.Fatal("second Run returned nil")
	}
}

func TestMetricsGoThroughTheBuffer(t *testing.T) {
	rec := metricstest.NewRecorder()
	h := newHarness(t, processor.Config[string]{Metrics: rec, CommitPolicy: processor.ImmediateCommit()}, nil)
	h.produce(p0, 0, 3)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("offset 3 committed", func() bool { return h.Consumer.Committed(p0) == 3 })
	if err := h.Stop(); err != nil {
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
	// One iteration polls the assignment, at least one more the run of 3.
	if got := rec.Counter("consumer.run.count"); got < 2 {
		t.Errorf("consumer.run.count = %d, want >= 2", got)
	}
	if len(rec.Timings("consumer.poll.time")) == 0 {
		t.Error("no x.consumer.poll.time recorded")
	}
}

func TestCommitsOffsetsOfInterleavedPartitions(t *testing.T) {
	// Runs of messages alternate between partitions, so the loop's cache of the
	// partition in use (hot.go) changes hands; a policy counting messages sees the
	// staged offsets of both.
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.CommitPolicy{MinMessages: 4}}, nil)
	h.produce(p0, 0, 2)
	h.produce(p1, 0, 2)
	h.produce(p0, 2, 2)
	h.Start()
	h.Consumer.Assign(p0, p1)
	h.WaitUntil("6 messages submitted", func() bool {
		return h.factory.Count() == 1 && len(h.factory.Strategy(t, 0).Payloads()) == 6
	})
	if err := h.Stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The fourth message commits both partitions; the last two go with the final join.
	want := []map[processor.Partition]int64{{p0: 2, p1: 2}, {p0: 4}}
	if got := h.Consumer.Commits(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("commits = %v, want %v", got, want)
	}
}
