package franz_test

import (
	"context"
	"testing"
	"time"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
)

func TestEveryMessageOnceCommittedToTheEndAndRestartResumes(t *testing.T) {
	env := kafkatest.New(t)
	topic, group := env.Topic(4), env.Group()
	const perPartition = 2500
	produce(t, env, topic, 4, perPartition, plain)

	n := &notifier{}
	s := newSeen(n)
	a := newApp(n, s)
	m := startMember(t, env, topic, group, "", a, processor.Config[payload]{CommitPolicy: processor.CommitPolicy{MinInterval: 100 * time.Millisecond}})
	waitUntil(t, n, "10 000 messages processed", func() bool { return s.distinct() == 4*perPartition })
	if err := m.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := s.dups(); d != 0 {
		t.Errorf("%d messages processed more than once", d)
	}
	committedEqualsEnds(t, env, topic, group)
	a.mu.Lock()
	shutdowns := a.shutdowns
	a.mu.Unlock()
	if shutdowns != 1 {
		t.Errorf("factory Shutdown ran %d times, want once", shutdowns)
	}

	// A restart in the same group starts at the committed offsets.
	n2 := &notifier{}
	s2 := newSeen(n2)
	m2 := startMember(t, env, topic, group, "", newApp(n2, s2), processor.Config[payload]{})
	produce(t, env, topic, 4, 1, func(int32, int) string { return "after restart" })
	waitUntil(t, n2, "the 4 new messages processed", func() bool { return s2.distinct() >= 4 })
	if err := m2.stop(); err != nil {
		t.Fatalf("Run after restart: %v", err)
	}
	if got := s2.distinct(); got != 4 {
		t.Fatalf("the restarted processor processed %d messages, want only the 4 new ones", got)
	}
	for p := range int32(4) {
		if pos := (processor.Position{Partition: processor.Partition{Topic: topic, Index: p}, Offset: perPartition}); !s2.has(pos) {
			t.Errorf("the restarted processor did not process %v", pos)
		}
	}
	committedEqualsEnds(t, env, topic, group)
}

func TestBackpressurePausesAndResumesWithNothingLostOrDoubled(t *testing.T) {
	env := kafkatest.New(t)
	topic, group := env.Topic(4), env.Group()
	const perPartition = 250
	produce(t, env, topic, 4, perPartition, plain)

	n := &notifier{}
	s := newSeen(n)
	a := newApp(n, s)
	a.gate = &gate{closed: true}
	rec := metricstest.NewRecorder()
	m := startMember(t, env, topic, group, "", a, processor.Config[payload]{
		BackpressurePauseAfter: 100 * time.Millisecond,
		PausedPollTimeout:      20 * time.Millisecond,
		Metrics:                rec,
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := rec.Wait(ctx, func() bool { return rec.Counter("consumer.pause") >= 1 }); err != nil {
		t.Fatalf("waiting for the consumer to pause: %v", err)
	}
	// More arrives while paused; it must come after the resume, once.
	produce(t, env, topic, 4, perPartition, plain)
	a.gate.set(false)
	waitUntil(t, n, "every message processed", func() bool { return s.distinct() == 2*4*perPartition })
	if err := m.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := s.dups(); d != 0 {
		t.Errorf("%d messages processed more than once", d)
	}
	if rec.Counter("consumer.resume") < 1 {
		t.Error("the consumer was never resumed")
	}
	committedEqualsEnds(t, env, topic, group)
}
