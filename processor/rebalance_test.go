package processor

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics/metricstest"
)

func TestEagerRevokeClosesJoinsAndCommitsBeforeRelease(t *testing.T) {
	h := newHarness(t, Config[string]{CommitPolicy: CommitPolicy{MinInterval: time.Hour}}, nil)
	h.consumer.produce(p0, 0, 4)
	h.consumer.produce(p1, 0, 3)
	h.start()
	h.consumer.assign(p0, p1)
	h.waitUntil("7 messages submitted", func() bool {
		return h.factory.count() == 1 && len(h.factory.strategy(t, 0).payloads()) == 7
	})
	h.await(h.consumer.revoke(p0, p1), "the revocation")
	// The final offsets were committed inside OnRevoke, before the partitions went.
	join, commit, revoked := h.ev.index(t, "strategy 1 join"), h.ev.index(t, "commit {t/0:4, t/1:3}"), h.ev.index(t, "revoked [t/0 t/1]")
	if !(join < commit && commit < revoked) {
		t.Fatalf("want join, then commit, then release; events: %v", h.ev.all())
	}
	h.await(h.consumer.assign(p0), "the new assignment")
	h.consumer.produce(p0, 4, 2)
	h.waitUntil("the new strategy to process offsets 4 and 5", func() bool {
		return h.factory.count() == 2 && len(h.factory.strategy(t, 1).payloads()) == 2
	})
	if s := h.factory.strategy(t, 1); !slices.Equal(s.partitions, []Partition{p0}) {
		t.Errorf("second strategy built for %v, want [t/0]", s.partitions)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestEagerRevokeResetsBackpressure(t *testing.T) {
	var reject atomic.Bool
	reject.Store(true)
	h := newHarness(t, Config[string]{CommitPolicy: ImmediateCommit(), BackpressurePauseAfter: time.Millisecond}, func(s *fakeStrategy) {
		s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
			if s.id == 1 && reject.Load() {
				return ErrMessageRejected
			}
			s.accept(m)
			return s.commit(m.Committable, false)
		}
	})
	h.consumer.produce(p0, 0, 3)
	h.start()
	h.consumer.assign(p0)
	h.waitUntil("the partition paused", func() bool { return h.ev.has("pause [t/0]") })
	h.await(h.consumer.revoke(p0), "the revocation")
	h.ev.index(t, "resume [t/0]")
	h.consumer.assign(p0)
	// The carried offset 0 was dropped with the old strategy (Kafka would deliver it
	// again from the committed offset); the new strategy gets what the consumer has.
	h.waitUntil("offset 3 committed", func() bool { return h.consumer.committedOffset(p0) == 3 })
	if got := h.factory.strategy(t, 1).payloads(); !slices.Equal(got, []string{"t/0@1", "t/0@2"}) {
		t.Fatalf("new strategy got %v, want only the messages the consumer still had", got)
	}
}

func TestCooperativeRevokeKeepsChainAndWaitsForCommits(t *testing.T) {
	var release atomic.Bool
	h := newHarness(t, Config[string]{CommitPolicy: CommitPolicy{MinInterval: time.Hour}}, func(s *fakeStrategy) {
		s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
			s.hold(m)
			return nil
		}
		s.onPoll = func(s *fakeStrategy) error {
			if release.Load() {
				return s.release()
			}
			return nil
		}
	})
	phases := h.recordPhases()
	h.consumer.produce(p0, 0, 3)
	h.consumer.produce(p1, 0, 3)
	h.start()
	h.consumer.assign(p0, p1)
	h.waitUntil("6 messages submitted", func() bool {
		return h.factory.count() == 1 && len(h.factory.strategy(t, 0).payloads()) == 6
	})
	done := h.consumer.revoke(p1)
	h.waitUntil("the loop in the rebalance phase", func() bool { return phases.current() == phaseRebalance })
	select {
	case <-done:
		t.Fatal("the revocation returned before the revoked partition's work was committed")
	default:
	}
	release.Store(true)
	h.await(done, "the revocation")
	if got := h.consumer.committedOffset(p1); got != 3 {
		t.Fatalf("committed offset of the revoked partition = %d when it was released, want 3", got)
	}
	s := h.factory.strategy(t, 0)
	if s.isClosed() || h.factory.count() != 1 {
		t.Fatal("a cooperative revocation closed or rebuilt the chain of the retained partitions")
	}
	h.ev.index(t, "changed [t/0]")
	h.await(h.consumer.assign(p1), "the new assignment")
	h.ev.index(t, "changed [t/0 t/1]")
	h.consumer.produce(p1, 3, 1)
	h.waitUntil("the retained chain to get t/1@3", func() bool { return slices.Contains(s.payloads(), "t/1@3") })
	if h.factory.count() != 1 {
		t.Fatalf("%d strategies built, want the one chain throughout", h.factory.count())
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestCooperativeRevokeDropsCarriedMessages(t *testing.T) {
	// A carried message keeps the loop off the consumer until the partitions pause,
	// so the revocation comes in after the pause.
	h := newHarness(t, Config[string]{CommitPolicy: ImmediateCommit(), BackpressurePauseAfter: time.Millisecond}, func(s *fakeStrategy) {
		s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
			if pos, _ := m.Origin(); pos.Partition == p1 {
				return ErrMessageRejected
			}
			s.accept(m)
			return s.commit(m.Committable, false)
		}
	})
	h.consumer.produce(p1, 0, 1)
	h.start()
	h.consumer.assign(p0, p1)
	h.waitUntil("the p1 message offered", func() bool {
		if h.factory.count() == 0 {
			return false
		}
		s := h.factory.strategy(t, 0)
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.attempts > 0
	})
	h.await(h.consumer.revoke(p1), "the revocation")
	h.ev.index(t, "resume [t/0 t/1]")
	// Were the carried p1 message kept, it would be offered for ever and p0 would
	// never get through.
	h.consumer.produce(p0, 0, 2)
	h.waitUntil("p0 offset 2 committed", func() bool { return h.consumer.committedOffset(p0) == 2 })
	if got := h.consumer.committedOffset(p1); got != 0 {
		t.Fatalf("revoked partition committed to %d, want nothing", got)
	}
}

func TestCooperativeRevokeGivesUpAfterJoinTimeout(t *testing.T) {
	rec := metricstest.NewRecorder()
	h := newHarness(t, Config[string]{CommitPolicy: ImmediateCommit(), JoinTimeout: 30 * time.Millisecond, Metrics: rec}, func(s *fakeStrategy) {
		s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
			s.hold(m) // never released
			return nil
		}
	})
	h.consumer.produce(p1, 0, 2)
	h.start()
	h.consumer.assign(p0, p1)
	h.waitUntil("2 messages submitted", func() bool {
		return h.factory.count() == 1 && len(h.factory.strategy(t, 0).payloads()) == 2
	})
	h.await(h.consumer.revoke(p1), "the revocation to give up")
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if got := rec.Counter("consumer.revoke.timeout"); got != 1 {
		t.Errorf("consumer.revoke.timeout = %d, want 1", got)
	}
	if got := h.consumer.committedOffset(p1); got != 0 {
		t.Errorf("unfinished work of the revoked partition committed to %d", got)
	}
}

func TestCooperativeRevokeOfEverythingClosesTheChain(t *testing.T) {
	h := newHarness(t, Config[string]{}, nil)
	h.start()
	h.await(h.consumer.assign(p0), "the assignment")
	h.await(h.consumer.assign(p1), "the second assignment")
	h.await(h.consumer.revoke(p0), "the first revocation")
	if s := h.factory.strategy(t, 0); s.isClosed() {
		t.Fatal("the chain was closed while t/1 was still assigned")
	}
	h.await(h.consumer.revoke(p1), "the last revocation")
	if s := h.factory.strategy(t, 0); !s.isClosed() {
		t.Fatal("the chain still runs with nothing assigned")
	}
	h.await(h.consumer.assign(p1), "a new assignment")
	if h.factory.count() != 2 {
		t.Fatalf("%d strategies built, want a new one for the new assignment", h.factory.count())
	}
	want := fmt.Sprint([][]Partition{{p0, p1}, {p1}})
	h.factory.mu.Lock()
	got := fmt.Sprint(h.factory.changes)
	h.factory.mu.Unlock()
	if got != want {
		t.Errorf("PartitionsChanged calls = %s, want %s", got, want)
	}
}
