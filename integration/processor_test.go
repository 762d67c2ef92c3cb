package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
)

func TestEveryMessageOnceCommittedToTheEndAndNotReadAgain(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		env := kafkatest.New(t)
		topic, group := env.Topic(4), env.Group()
		const perPartition = 2500 // 10 000 in all
		env.Fill(topic, 4, perPartition, plain)

		n := &notifier{}
		s := newSeen(n)
		a := newApp(n, s)
		m := startMember(t, b, env, topic, group, "", a, processor.Config[payload]{CommitPolicy: processor.CommitPolicy{MinInterval: 100 * time.Millisecond}})
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

		// A restart in the same group starts at the committed offsets: the first thing
		// it processes is what is produced now.
		n2 := &notifier{}
		s2 := newSeen(n2)
		m2 := startMember(t, b, env, topic, group, "", newApp(n2, s2), processor.Config[payload]{})
		env.Fill(topic, 4, 1, func(p int32, i int) string { return "after restart" })
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
	})
}

func TestBackpressurePausesAndResumesWithNothingLostOrDoubled(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		env := kafkatest.New(t)
		topic, group := env.Topic(4), env.Group()
		const perPartition = 250
		env.Fill(topic, 4, perPartition, plain)

		n := &notifier{}
		s := newSeen(n)
		a := newApp(n, s)
		a.gate = &gate{closed: true}
		rec := metricstest.NewRecorder()
		m := startMember(t, b, env, topic, group, "", a, processor.Config[payload]{
			BackpressurePauseAfter: 100 * time.Millisecond,
			PausedPollTimeout:      20 * time.Millisecond,
			Metrics:                rec,
		})
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := rec.Wait(ctx, func() bool { return rec.Counter("consumer.pause") >= 1 }); err != nil {
			t.Fatalf("waiting for the consumer to pause: %v", err)
		}
		a.gate.set(false)
		waitUntil(t, n, "every message processed", func() bool { return s.distinct() == 4*perPartition })
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
	})
}

func TestShutdownCommitsWhatWasProcessed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		env := kafkatest.New(t)
		topic, group := env.Topic(2), env.Group()
		env.Fill(topic, 2, 100, plain)
		n := &notifier{}
		s := newSeen(n)
		// With an hour between commits only the shutdown's forced commit commits.
		m := startMember(t, b, env, topic, group, "", newApp(n, s), processor.Config[payload]{CommitPolicy: processor.CommitPolicy{MinInterval: time.Hour}})
		waitUntil(t, n, "200 messages processed", func() bool { return s.distinct() == 200 })
		if err := m.stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		committedEqualsEnds(t, env, topic, group)
	})
}

func TestStrategyErrorCommitsNothingPastTheFailure(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		env := kafkatest.New(t)
		topic, group := env.Topic(1), env.Group()
		env.Fill(topic, 1, 100, plain)
		n := &notifier{}
		s := newSeen(n)
		a := newApp(n, s)
		boom := errors.New("cannot process")
		a.fn = func(_ context.Context, m processor.Message[payload]) (payload, error) {
			if pos, _ := m.Origin(); pos.Offset == 40 {
				return payload{}, boom
			}
			return m.Payload, nil
		}
		m := startMember(t, b, env, topic, group, "", a, processor.Config[payload]{CommitPolicy: processor.ImmediateCommit()})
		if err := m.result(); !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want it to wrap %v", err, boom)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		committed, err := env.Client.CommittedOffsets(ctx, group, topic)
		if err != nil {
			t.Fatal(err)
		}
		if got := committed[0]; got > 40 {
			t.Fatalf("committed offset %d after a failure at offset 40; nothing past it may be committed", got)
		}
	})
}
