package processor_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
)

// contextsCancelled reports whether every message's context is cancelled, and names
// the first that is not.
func contextsCancelled(msgs []processor.Message[string]) (bool, string) {
	for _, m := range msgs {
		if m.Context().Err() == nil {
			return false, m.Payload
		}
	}
	return true, ""
}

// TestLosingEverythingCommitsNothing: partitions lost with the group session are
// not committed for, whatever the chain held for them: their messages' contexts are
// cancelled before the chain is joined, the commits the chain asks for while it
// joins send nothing, and Run goes on to build a new chain at the next assignment.
func TestLosingEverythingCommitsNothing(t *testing.T) {
	accept := func(s *processortest.Strategy[string], m processor.Message[string]) error {
		s.Accept(m)
		return s.Commit(m.Committable, false)
	}
	cases := []struct {
		name string
		cfg  processor.Config[string]
		// submit is the first chain's Submit; the later chains accept and stage.
		submit func(s *processortest.Strategy[string], m processor.Message[string]) error
		// ready is what the test waits for before the loss.
		ready     string
		readyWhen func(h *harness, s *processortest.Strategy[string]) bool
		paused    bool
	}{
		{
			name:      "work held in the chain",
			submit:    func(s *processortest.Strategy[string], m processor.Message[string]) error { s.Hold(m); return nil },
			ready:     "5 messages held",
			readyWhen: func(_ *harness, s *processortest.Strategy[string]) bool { return len(s.Payloads()) == 5 },
		},
		{
			name:      "offsets staged, not committed yet",
			submit:    accept,
			ready:     "5 messages staged",
			readyWhen: func(_ *harness, s *processortest.Strategy[string]) bool { return len(s.Payloads()) == 5 },
		},
		{
			name: "partitions paused by backpressure",
			cfg:  processor.Config[string]{BackpressurePauseAfter: time.Millisecond},
			submit: func(s *processortest.Strategy[string], m processor.Message[string]) error {
				if len(s.Payloads()) == 2 {
					return processor.ErrMessageRejected
				}
				return accept(s, m)
			},
			ready:     "the partitions paused",
			readyWhen: func(h *harness, _ *processortest.Strategy[string]) bool { return h.Events.Has("pause [t/0 t/1]") },
			paused:    true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var cancelledAtJoin atomic.Value // string: "" when every context was cancelled
			rec := metricstest.NewRecorder()
			cfg := tc.cfg
			cfg.Metrics = rec
			cfg.CommitPolicy = processor.CommitPolicy{MinInterval: time.Hour}
			h := newHarness(t, cfg, func(s *processortest.Strategy[string]) {
				if s.ID == 1 {
					s.OnSubmit = tc.submit
				}
				s.OnJoin = func(s *processortest.Strategy[string], _ context.Context) error {
					ok, live := contextsCancelled(s.Submitted())
					if !ok {
						cancelledAtJoin.Store("context of " + live + " still live")
					} else {
						cancelledAtJoin.Store("")
					}
					// What a chain does at a join: finish its work and commit it.
					if err := s.Release(); err != nil {
						return err
					}
					return s.Commit(processor.Committable{}, true)
				}
			})
			h.produce(p0, 0, 3)
			h.produce(p1, 0, 2)
			h.Start()
			h.Consumer.Assign(p0, p1)
			h.WaitUntil(tc.ready, func() bool {
				return h.factory.Count() == 1 && tc.readyWhen(h, h.factory.Strategy(t, 0))
			})
			s := h.factory.Strategy(t, 0)
			h.Await(h.Consumer.Lose(p0, p1), "the loss")

			if got := h.Consumer.Commits(); len(got) != 0 {
				t.Fatalf("commits %v for lost partitions, want none", got)
			}
			if !s.Closed() {
				t.Fatal("the chain of the lost partitions was not closed")
			}
			if join, lost := h.Events.Index(t, "strategy 1 join"), h.Events.Index(t, "lost [t/0 t/1]"); join > lost {
				t.Errorf("the chain was joined after the partitions were released; events: %v", h.Events.All())
			}
			if msg, _ := cancelledAtJoin.Load().(string); msg != "" {
				t.Errorf("at the join of the lost chain: %s; want every message's context cancelled first", msg)
			}
			if ok, live := contextsCancelled(s.Submitted()); !ok {
				t.Errorf("context of %s still live after its partition was lost", live)
			}
			if tc.paused {
				if pause, resume := h.Events.Index(t, "pause [t/0 t/1]"), h.Events.Index(t, "resume [t/0 t/1]"); resume < pause {
					t.Errorf("the paused partitions were not resumed at the loss; events: %v", h.Events.All())
				}
			}

			// The group is rejoined: a new chain reads on from what is produced, as
			// the consumer would from the last commit.
			h.Await(h.Consumer.Assign(p0, p1), "the new assignment")
			h.produce(p0, 3, 1)
			h.WaitUntil("a new chain to take t/0@3", func() bool {
				return h.factory.Count() == 2 && slices.Contains(h.factory.Strategy(t, 1).Payloads(), "t/0@3")
			})
			if err := h.Stop(); err != nil {
				t.Fatalf("Run = %v, want nil: lost partitions must not end the processor", err)
			}
			// What the fake consumer still had of t/1 goes to the new chain too.
			if got := h.Consumer.Commits(); len(got) != 1 || got[0][p0] != 4 {
				t.Errorf("commits %v, want only the new chain's final one, with t/0:4", got)
			}
			if got := rec.Counter("consumer.partitions_lost.count"); got != 2 {
				t.Errorf("consumer.partitions_lost.count = %d, want 2", got)
			}
			if got := rec.Counter("consumer.partitions_revoked.count"); got != 0 {
				t.Errorf("consumer.partitions_revoked.count = %d, want 0: a loss is not a revocation", got)
			}
		})
	}
}

// TestLosingEverythingDoesNotWaitJoinTimeout: a chain whose work cannot finish
// (blocked until its join's deadline) does not hold the loop for JoinTimeout when
// its partitions are lost: its join is given a short deadline.
func TestLosingEverythingDoesNotWaitJoinTimeout(t *testing.T) {
	const joinTimeout = time.Hour
	type joinCall struct {
		remaining   time.Duration
		hasDeadline bool
	}
	joins := make(chan joinCall, 1)
	h := newHarness(t, processor.Config[string]{JoinTimeout: joinTimeout}, func(s *processortest.Strategy[string]) {
		if s.ID != 1 {
			return
		}
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			s.Hold(m)
			return nil
		}
		s.OnJoin = func(_ *processortest.Strategy[string], ctx context.Context) error {
			deadline, ok := ctx.Deadline()
			joins <- joinCall{remaining: time.Until(deadline), hasDeadline: ok}
			<-ctx.Done()
			return nil
		}
	})
	h.produce(p0, 0, 1)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("the message held", func() bool {
		return h.factory.Count() == 1 && len(h.factory.Strategy(t, 0).Payloads()) == 1
	})
	// Were the join given JoinTimeout, this would time out.
	h.Await(h.Consumer.Lose(p0), "the loss, with a join blocked until its deadline")
	j := <-joins
	if !j.hasDeadline || j.remaining > time.Second {
		t.Errorf("join of the lost chain had deadline %v (set: %v), want at most 1s away", j.remaining, j.hasDeadline)
	}
	h.Await(h.Consumer.Assign(p0), "the new assignment")
	h.produce(p0, 1, 1)
	h.WaitUntil("a new chain to take t/0@1", func() bool {
		return h.factory.Count() == 2 && slices.Contains(h.factory.Strategy(t, 1).Payloads(), "t/0@1")
	})
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestLosingSomePartitions: when only some partitions are lost the chain keeps
// running for the rest, without a join or a commit for the lost ones, whose
// messages' contexts are cancelled. Should a lost partition come back while the
// chain still holds work of it, the chain is rebuilt (that work is dropped, and a
// later message finishing there must not commit past it); otherwise it is kept.
func TestLosingSomePartitions(t *testing.T) {
	for _, tc := range []struct {
		name       string
		unfinished bool // p1's messages are still held in the chain at the loss
		chains     int  // built once p1 is assigned again
	}{
		{name: "lost partition with work in the chain", unfinished: true, chains: 2},
		{name: "lost partition with everything committed", unfinished: false, chains: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var release, released atomic.Bool
			h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit()}, func(s *processortest.Strategy[string]) {
				s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
					if pos, _ := m.Origin(); s.ID == 1 && tc.unfinished && pos.Partition == p1 {
						s.Hold(m)
						return nil
					}
					s.Accept(m)
					return s.Commit(m.Committable, false)
				}
				s.OnPoll = func(s *processortest.Strategy[string]) error {
					if release.Load() && !released.Load() {
						// The work of the lost partition finishes after the loss.
						err := s.Release()
						released.Store(true)
						return err
					}
					return nil
				}
			})
			h.produce(p0, 0, 2)
			h.produce(p1, 0, 2)
			h.Start()
			h.Consumer.Assign(p0, p1)
			h.WaitUntil("4 messages submitted and the finished ones committed", func() bool {
				return h.factory.Count() == 1 && len(h.factory.Strategy(t, 0).Payloads()) == 4 &&
					h.Consumer.Committed(p0) == 2 && (tc.unfinished || h.Consumer.Committed(p1) == 2)
			})
			s := h.factory.Strategy(t, 0)
			before := len(h.Consumer.Commits())
			h.Await(h.Consumer.Lose(p1), "the loss of t/1")

			if s.Closed() || h.factory.Count() != 1 {
				t.Fatal("a loss of some partitions closed or rebuilt the chain of the others")
			}
			h.Events.Index(t, "changed [t/0]")
			for _, m := range s.Submitted() {
				pos, _ := m.Origin()
				if cancelled := m.Context().Err() != nil; cancelled != (pos.Partition == p1) {
					t.Errorf("context of %s cancelled = %v after t/1 was lost, want %v", m.Payload, cancelled, pos.Partition == p1)
				}
			}
			release.Store(true)
			h.WaitUntil("the chain to finish t/1's work", released.Load)
			h.produce(p0, 2, 1)
			h.WaitUntil("t/0 committed to 3", func() bool { return h.Consumer.Committed(p0) == 3 })
			for _, c := range h.Consumer.Commits()[before:] {
				if _, ok := c[p1]; ok {
					t.Fatalf("commit %v after t/1 was lost includes it", c)
				}
			}

			h.Await(h.Consumer.Assign(p1), "t/1 assigned again")
			if got := h.factory.Count(); got != tc.chains {
				t.Fatalf("%d chains once t/1 came back, want %d", got, tc.chains)
			}
			h.produce(p1, 2, 1)
			h.WaitUntil("t/1 committed to 3", func() bool { return h.Consumer.Committed(p1) == 3 })
			if err := h.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLosingPartitionsNotAssigned: a loss reported for partitions the processor does
// not have changes nothing.
func TestLosingPartitionsNotAssigned(t *testing.T) {
	rec := metricstest.NewRecorder()
	h := newHarness(t, processor.Config[string]{Metrics: rec}, nil)
	h.Start()
	h.Await(h.Consumer.Assign(p0), "the assignment")
	h.Await(h.Consumer.Lose(p1), "the loss of a partition never assigned")
	if s := h.factory.Strategy(t, 0); s.Closed() || h.factory.Count() != 1 {
		t.Fatal("the chain was closed or rebuilt for a loss of a partition it did not have")
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := rec.Counter("consumer.partitions_lost.count"); got != 0 {
		t.Errorf("consumer.partitions_lost.count = %d, want 0", got)
	}
}

// TestLosingPartitionsDropsTheirDLQState: a lost partition's failing dead-letter
// deliveries are not retried and hold nothing back: once it is assigned again it is
// not paused and its new work is committed.
func TestLosingPartitionsDropsTheirDLQState(t *testing.T) {
	dlq := &fakeDLQ{err: errors.New("dlq broker down")}
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit(),
		DLQ: &processor.DLQPolicy[string]{Producer: dlq, Size: sizeOf, RetryBackoff: time.Millisecond, MaxRetryBackoff: time.Millisecond}}, invalidAt(1))
	dlq.n = h.Events
	h.produce(p0, 0, 3)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("two failed deliveries and the partition paused", func() bool {
		return len(dlq.payloads()) >= 2 && h.Events.Has("pause [t/0]")
	})
	h.Await(h.Consumer.Lose(p0), "the loss")
	attempts := len(dlq.payloads())
	if got := h.Consumer.Commits(); len(got) != 1 || got[0][p0] != 1 {
		t.Fatalf("commits %v, want only {t/0:1}, below the invalid message, from before the loss", got)
	}

	h.Await(h.Consumer.Assign(p0), "the new assignment")
	h.produce(p0, 3, 2)
	h.WaitUntil("t/0 committed to 5", func() bool { return h.Consumer.Committed(p0) == 5 })
	if got := h.Consumer.Paused(); len(got) != 0 {
		t.Errorf("paused %v after the lost partition came back, want none", got)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := len(dlq.payloads()); got != attempts {
		t.Errorf("%d DLQ deliveries tried after the loss, want none: the lost partition's are its next owner's", got-attempts)
	}
	if got := processor.DLQBuffered(h.Processor); got != 0 {
		t.Errorf("DLQ buffers %d messages after everything was committed, want 0", got)
	}
}

// TestLostChainFailingItsJoinDoesNotStopRun: an error or a panic of the lost chain's
// join concerns only work that is dropped and redelivered, so Run goes on.
func TestLostChainFailingItsJoinDoesNotStopRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		join func() error
	}{
		{name: "error", join: func() error { return errors.New("processortest: sink unreachable") }},
		{name: "panic", join: func() error { panic("processortest: join panics") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, processor.Config[string]{}, func(s *processortest.Strategy[string]) {
				if s.ID == 1 {
					s.OnJoin = func(*processortest.Strategy[string], context.Context) error { return tc.join() }
				}
			})
			h.Start()
			h.Await(h.Consumer.Assign(p0), "the assignment")
			h.Await(h.Consumer.Lose(p0), "the loss")
			h.Await(h.Consumer.Assign(p0), "the new assignment")
			h.produce(p0, 0, 1)
			h.WaitUntil("a new chain to take t/0@0", func() bool {
				return h.factory.Count() == 2 && slices.Contains(h.factory.Strategy(t, 1).Payloads(), "t/0@0")
			})
			if err := h.Stop(); err != nil {
				t.Fatalf("Run = %v, want nil: the lost chain's failure must not end it", err)
			}
		})
	}
}
