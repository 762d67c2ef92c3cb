package strategies

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

func even(_ context.Context, m processor.Message[int]) bool { return m.Payload%2 == 0 }

func TestFilterDrops(t *testing.T) {
	next := &recorder[int]{}
	m := newCountMetrics()
	s := NewFilter(even, next, WithMetrics(m))
	in := []processor.Message[int]{
		brokerMsg(1, tp0, 0),
		brokerMsg(2, tp0, 1),
		processor.NewFiltered[int](processor.CommittableOf(tp0, 3), time.Unix(2, 0)),
		brokerMsg(3, tp0, 3),
		brokerMsg(4, tp0, 4),
	}
	for i, msg := range in {
		if err := s.Submit(msg); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	got := next.messages()
	checkCommittables(t, got, processor.CommittableOf(tp0, 2), processor.CommittableOf(tp0, 3), processor.CommittableOf(tp0, 5))
	if got[0].Payload != 2 || !got[1].Filtered() || got[2].Payload != 4 {
		t.Fatalf("forwarded %+v, want 2, the filtered message, 4", got)
	}
	if n := m.counter("strategies.filter.dropped_messages"); n != 2 {
		t.Fatalf("dropped_messages = %d, want 2", n)
	}
}

func TestFilterPassesFiltered(t *testing.T) {
	next := &recorder[int]{}
	s := NewFilter(func(context.Context, processor.Message[int]) bool { return false }, next)
	c := processor.CommittableOf(tp0, 3)
	if err := s.Submit(processor.NewFiltered[int](c, time.Unix(2, 0))); err != nil {
		t.Fatalf("Submit(filtered) = %v", err)
	}
	got := next.messages()
	checkCommittables(t, got, c)
	if !got[0].Filtered() {
		t.Fatal("forwarded a message with a payload, want the filtered message untouched")
	}
}

func TestFilterCommitPolicy(t *testing.T) {
	next := &recorder[int]{}
	s, err := NewFilterWithCommitPolicy(even, processor.CommitPolicy{MinMessages: 3}, next)
	if err != nil {
		t.Fatalf("NewFilterWithCommitPolicy = %v", err)
	}
	submit := func(m processor.Message[int]) {
		t.Helper()
		if err := s.Submit(m); err != nil {
			t.Fatalf("Submit = %v", err)
		}
	}
	submit(brokerMsg(1, tp0, 0))
	submit(brokerMsg(1, tp1, 0))
	if n := len(next.messages()); n != 0 {
		t.Fatalf("forwarded %d messages after two drops, want 0", n)
	}
	submit(brokerMsg(1, tp0, 1))
	merged := processor.CommittableFromMap(map[processor.Partition]int64{tp0: 2, tp1: 1})
	checkCommittables(t, next.messages(), merged)
	if !next.messages()[0].Filtered() {
		t.Fatal("dropped offsets forwarded as a message with a payload, want a filtered one")
	}

	submit(brokerMsg(3, tp1, 1))
	s.Close()
	if err := s.Join(doneCtx()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	checkCommittables(t, next.messages(), merged, processor.CommittableOf(tp1, 2))
	checkJoined(t, next)
}

func TestFilterCommitPolicyInterval(t *testing.T) {
	next := &recorder[int]{}
	clock := newManualClock()
	s, err := NewFilterWithCommitPolicy(even, processor.CommitPolicy{MinInterval: time.Second}, next, WithClock(clock.now))
	if err != nil {
		t.Fatalf("NewFilterWithCommitPolicy = %v", err)
	}
	if err := s.Submit(brokerMsg(1, tp0, 0)); err != nil {
		t.Fatalf("Submit = %v", err)
	}
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if n := len(next.messages()); n != 0 {
		t.Fatalf("forwarded %d messages before the interval, want 0", n)
	}
	clock.advance(time.Second)
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	checkCommittables(t, next.messages(), processor.CommittableOf(tp0, 1))
}

func TestFilterPassingMessageSupersedesDropped(t *testing.T) {
	next := &recorder[int]{}
	s, err := NewFilterWithCommitPolicy(even, processor.CommitPolicy{MinMessages: 100}, next)
	if err != nil {
		t.Fatalf("NewFilterWithCommitPolicy = %v", err)
	}
	for i, m := range []processor.Message[int]{brokerMsg(1, tp0, 0), brokerMsg(2, tp0, 1)} {
		if err := s.Submit(m); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	s.Close()
	if err := s.Join(doneCtx()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	// The passing message at offset 1 already commits past the dropped offset 0.
	checkCommittables(t, next.messages(), processor.CommittableOf(tp0, 2))
}

func TestFilterBackpressureNeverSubmitsTwice(t *testing.T) {
	next := &recorder[int]{}
	s, err := NewFilterWithCommitPolicy(even, processor.CommitPolicy{MinMessages: 1}, next)
	if err != nil {
		t.Fatalf("NewFilterWithCommitPolicy = %v", err)
	}
	next.rejectAll(true)
	// The drop triggers a filtered message that next rejects: it must be carried, not
	// reported as a rejection of the dropped message.
	if err := s.Submit(brokerMsg(1, tp0, 0)); err != nil {
		t.Fatalf("Submit(dropped) = %v, want nil", err)
	}
	if err := s.Submit(brokerMsg(2, tp0, 1)); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit while carrying = %v, want ErrMessageRejected", err)
	}
	next.rejectAll(false)
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if err := s.Submit(brokerMsg(2, tp0, 1)); err != nil {
		t.Fatalf("Submit = %v", err)
	}
	got := next.messages()
	checkCommittables(t, got, processor.CommittableOf(tp0, 1), processor.CommittableOf(tp0, 2))
	if !got[0].Filtered() || got[1].Payload != 2 {
		t.Fatalf("forwarded %+v, want the filtered offset then 2, each once", got)
	}
}

func TestFilterInvalidPolicy(t *testing.T) {
	_, err := NewFilterWithCommitPolicy(even, processor.CommitPolicy{}, processor.Strategy[int](&recorder[int]{}))
	if !errors.Is(err, processor.ErrInvalidCommitPolicy) {
		t.Fatalf("NewFilterWithCommitPolicy(empty policy) = %v, want ErrInvalidCommitPolicy", err)
	}
}
