package processor_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
)

func TestEagerRevokeClosesJoinsAndCommitsBeforeRelease(t *testing.T) {
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.CommitPolicy{MinInterval: time.Hour}}, nil)
	h.produce(p0, 0, 4)
	h.produce(p1, 0, 3)
	h.Start()
	h.Consumer.Assign(p0, p1)
	h.WaitUntil("7 messages submitted", func() bool {
		return h.factory.Count() == 1 && len(h.factory.Strategy(t, 0).Payloads()) == 7
	})
	h.Await(h.Consumer.Revoke(p0, p1), "the revocation")
	// The final offsets were committed inside OnRevoke, before the partitions went.
	join, commit, revoked := h.Events.Index(t, "strategy 1 join"), h.Events.Index(t, "commit {t/0:4, t/1:3}"), h.Events.Index(t, "revoked [t/0 t/1]")
	if !(join < commit && commit < revoked) {
		t.Fatalf("want join, then commit, then release; events: %v", h.Events.All())
	}
	h.Await(h.Consumer.Assign(p0), "the new assignment")
	h.produce(p0, 4, 2)
	h.WaitUntil("the new strategy to process offsets 4 and 5", func() bool {
		return h.factory.Count() == 2 && len(h.factory.Strategy(t, 1).Payloads()) == 2
	})
	if s := h.factory.Strategy(t, 1); !slices.Equal(s.Partitions, []processor.Partition{p0}) {
		t.Errorf("second strategy built for %v, want [t/0]", s.Partitions)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestEagerRevokeResetsBackpressure(t *testing.T) {
	var reject atomic.Bool
	reject.Store(true)
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit(), BackpressurePauseAfter: time.Millisecond}, func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			if s.ID == 1 && reject.Load() {
				return processor.ErrMessageRejected
			}
			s.Accept(m)
			return s.Commit(m.Committable, false)
		}
	})
	h.produce(p0, 0, 1)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("the partition paused", func() bool { return h.Events.Has("pause [t/0]") })
	// Produced after the pause, so that the consumer still has them at the
	// revocation rather than the loop carrying them in the run of offset 0.
	h.produce(p0, 1, 2)
	h.Await(h.Consumer.Revoke(p0), "the revocation")
	h.Events.Index(t, "resume [t/0]")
	h.Consumer.Assign(p0)
	// The carried offset 0 was dropped with the old strategy (Kafka would deliver it
	// again from the committed offset); the new strategy gets what the consumer has.
	h.WaitUntil("offset 3 committed", func() bool { return h.Consumer.Committed(p0) == 3 })
	if got := h.factory.Strategy(t, 1).Payloads(); !slices.Equal(got, []string{"t/0@1", "t/0@2"}) {
		t.Fatalf("new strategy got %v, want only the messages the consumer still had", got)
	}
}

func TestCooperativeRevokeKeepsChainAndWaitsForCommits(t *testing.T) {
	var release atomic.Bool
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.CommitPolicy{MinInterval: time.Hour}}, func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			s.Hold(m)
			return nil
		}
		s.OnPoll = func(s *processortest.Strategy[string]) error {
			if release.Load() {
				return s.Release()
			}
			return nil
		}
	})
	phases := processor.RecordPhases(h.Processor, h.Events.Notify)
	h.produce(p0, 0, 3)
	h.produce(p1, 0, 3)
	h.Start()
	h.Consumer.Assign(p0, p1)
	h.WaitUntil("6 messages submitted", func() bool {
		return h.factory.Count() == 1 && len(h.factory.Strategy(t, 0).Payloads()) == 6
	})
	done := h.Consumer.Revoke(p1)
	h.WaitUntil("the loop in the rebalance phase", func() bool { return phases.Current() == processor.PhaseRebalance })
	select {
	case <-done:
		t.Fatal("the revocation returned before the revoked partition's work was committed")
	default:
	}
	release.Store(true)
	h.Await(done, "the revocation")
	if got := h.Consumer.Committed(p1); got != 3 {
		t.Fatalf("committed offset of the revoked partition = %d when it was released, want 3", got)
	}
	s := h.factory.Strategy(t, 0)
	if s.Closed() || h.factory.Count() != 1 {
		t.Fatal("a cooperative revocation closed or rebuilt the chain of the retained partitions")
	}
	h.Events.Index(t, "changed [t/0]")
	h.Await(h.Consumer.Assign(p1), "the new assignment")
	h.Events.Index(t, "changed [t/0 t/1]")
	h.produce(p1, 3, 1)
	h.WaitUntil("the retained chain to get t/1@3", func() bool { return slices.Contains(s.Payloads(), "t/1@3") })
	if h.factory.Count() != 1 {
		t.Fatalf("%d strategies built, want the one chain throughout", h.factory.Count())
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestCooperativeRevokeDropsCarriedMessages(t *testing.T) {
	// A carried message keeps the loop off the consumer until the partitions pause,
	// so the revocation comes in after the pause.
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit(), BackpressurePauseAfter: time.Millisecond}, func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			if pos, _ := m.Origin(); pos.Partition == p1 {
				return processor.ErrMessageRejected
			}
			s.Accept(m)
			return s.Commit(m.Committable, false)
		}
	})
	h.produce(p1, 0, 1)
	h.Start()
	h.Consumer.Assign(p0, p1)
	h.WaitUntil("the p1 message offered", func() bool {
		if h.factory.Count() == 0 {
			return false
		}
		s := h.factory.Strategy(t, 0)
		return s.Attempts() > 0
	})
	h.Await(h.Consumer.Revoke(p1), "the revocation")
	h.Events.Index(t, "resume [t/0 t/1]")
	// Were the carried p1 message kept, it would be offered for ever and p0 would
	// never get through.
	h.produce(p0, 0, 2)
	h.WaitUntil("p0 offset 2 committed", func() bool { return h.Consumer.Committed(p0) == 2 })
	if got := h.Consumer.Committed(p1); got != 0 {
		t.Fatalf("revoked partition committed to %d, want nothing", got)
	}
}

func TestCooperativeRevokeGivesUpAfterJoinTimeout(t *testing.T) {
	rec := metricstest.NewRecorder()
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit(), JoinTimeout: 30 * time.Millisecond, Metrics: rec}, func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			s.Hold(m) // never released
			return nil
		}
	})
	h.produce(p1, 0, 2)
	h.Start()
	h.Consumer.Assign(p0, p1)
	h.WaitUntil("2 messages submitted", func() bool {
		return h.factory.Count() == 1 && len(h.factory.Strategy(t, 0).Payloads()) == 2
	})
	h.Await(h.Consumer.Revoke(p1), "the revocation to give up")
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := rec.Counter("consumer.revoke.timeout"); got != 1 {
		t.Errorf("consumer.revoke.timeout = %d, want 1", got)
	}
	if got := h.Consumer.Committed(p1); got != 0 {
		t.Errorf("unfinished work of the revoked partition committed to %d", got)
	}
}

// TestReassignAfterGivingUpRebuildsTheChain: work of a partition left in the chain
// by a revocation that gave up is cancelled and may be dropped, so when the
// partition comes back the chain is rebuilt rather than allowed to commit past it.
func TestReassignAfterGivingUpRebuildsTheChain(t *testing.T) {
	h := newHarness(t, processor.Config[string]{JoinTimeout: 30 * time.Millisecond}, func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			if pos, _ := m.Origin(); pos.Partition == p1 {
				s.Hold(m) // never released
			}
			return nil
		}
	})
	h.produce(p1, 0, 1)
	h.Start()
	h.Consumer.Assign(p0, p1)
	h.WaitUntil("p1's message submitted", func() bool {
		return h.factory.Count() == 1 && len(h.factory.Strategy(t, 0).Payloads()) == 1
	})
	h.Await(h.Consumer.Revoke(p1), "the revocation to give up")
	if got := h.factory.Count(); got != 1 {
		t.Fatalf("%d chains after a cooperative revocation, want the one kept", got)
	}
	h.Await(h.Consumer.Assign(p1), "the new assignment")
	if got := h.factory.Count(); got != 2 {
		t.Fatalf("%d chains after p1 came back with work left in the first, want it rebuilt (2)", got)
	}
}

func TestCooperativeRevokeOfEverythingClosesTheChain(t *testing.T) {
	h := newHarness(t, processor.Config[string]{}, nil)
	h.Start()
	h.Await(h.Consumer.Assign(p0), "the assignment")
	h.Await(h.Consumer.Assign(p1), "the second assignment")
	h.Await(h.Consumer.Revoke(p0), "the first revocation")
	if s := h.factory.Strategy(t, 0); s.Closed() {
		t.Fatal("the chain was closed while t/1 was still assigned")
	}
	h.Await(h.Consumer.Revoke(p1), "the last revocation")
	if s := h.factory.Strategy(t, 0); !s.Closed() {
		t.Fatal("the chain still runs with nothing assigned")
	}
	h.Await(h.Consumer.Assign(p1), "a new assignment")
	if h.factory.Count() != 2 {
		t.Fatalf("%d strategies built, want a new one for the new assignment", h.factory.Count())
	}
	want := fmt.Sprint([][]processor.Partition{{p0, p1}, {p1}})
	got := fmt.Sprint(h.factory.Changes())
	if got != want {
		t.Errorf("PartitionsChanged calls = %s, want %s", got, want)
	}
}

// A revocation whose offsets cannot be committed (the group session died with the
// broker) treats the partitions as lost: the processor logs it, keeps running and
// consumes them again from the last commit once they are assigned again.
func TestEagerRevokeWithFailingCommitLosesThePartitionsAndKeepsRunning(t *testing.T) {
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.CommitPolicy{MinInterval: time.Hour}}, nil)
	h.produce(p0, 0, 3)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("3 messages submitted", func() bool {
		return h.factory.Count() == 1 && len(h.factory.Strategy(t, 0).Payloads()) == 3
	})
	h.Consumer.SetCommitError(errors.New("coordinator unreachable"))
	h.Await(h.Consumer.Revoke(p0), "the revocation")
	if got := h.Consumer.Committed(p0); got != 0 {
		t.Fatalf("committed offset %d after a failed commit, want 0", got)
	}
	h.Consumer.SetCommitError(nil)
	h.Await(h.Consumer.Assign(p0), "the new assignment")
	h.produce(p0, 3, 1)
	h.WaitUntil("the new strategy to take offset 3", func() bool {
		return h.factory.Count() == 2 && slices.Contains(h.factory.Strategy(t, 1).Payloads(), "t/0@3")
	})
	if err := h.Stop(); err != nil {
		t.Fatalf("Stop: %v, want nil: lost partitions must not end the processor", err)
	}
	if got := h.Consumer.Committed(p0); got != 4 {
		t.Fatalf("committed offset %d after the restart of the partition, want 4", got)
	}
}

type ctxKey struct{}

// TestMessageContextCarriesRunValues: a message's context has the values of the
// context Run was given, and is cancelled when the partition is revoked and the
// chain joined, not when Run's context is.
func TestMessageContextCarriesRunValues(t *testing.T) {
	got := make(chan context.Context, 1)
	h := newHarness(t, processor.Config[string]{}, func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(_ *processortest.Strategy[string], m processor.Message[string]) error {
			select {
			case got <- m.Context():
			default:
			}
			return nil
		}
	})
	h.produce(p0, 0, 1)
	h.Consumer.Assign(p0)
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "run"))
	done := make(chan error, 1)
	go func() { done <- h.Processor.Run(ctx) }()
	var mctx context.Context
	select {
	case mctx = <-got:
	case <-time.After(processortest.WaitTimeout):
		t.Fatal("no message submitted")
	}
	if v := mctx.Value(ctxKey{}); v != "run" {
		t.Errorf("message context value = %v, want the Run context's %q", v, "run")
	}
	if err := mctx.Err(); err != nil {
		t.Fatalf("message context is %v while its partition is assigned", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(processortest.WaitTimeout):
		t.Fatal("Run did not return after cancellation")
	}
	if mctx.Err() == nil {
		t.Error("message context still live after Run returned")
	}
}
