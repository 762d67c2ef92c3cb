package strategies

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

// commitCall is one call of a CommitFunc.
type commitCall struct {
	offsets processor.Committable
	force   bool
}

type commitLog struct{ calls []commitCall }

func (l *commitLog) commit(c processor.Committable, force bool) error {
	l.calls = append(l.calls, commitCall{c, force})
	return nil
}

func TestCommitOffsets(t *testing.T) {
	p0 := processor.Partition{Topic: "t", Index: 0}
	p1 := processor.Partition{Topic: "t", Index: 1}
	var log commitLog
	s := NewCommitOffsets[string](log.commit)

	steps := []struct {
		name string
		do   func() error
		want commitCall
	}{
		{"broker message", func() error { return s.Submit(processor.NewBrokerMessage("a", p0, 4, time.Time{})) },
			commitCall{processor.CommittableOf(p0, 5), false}},
		{"filtered message", func() error {
			return s.Submit(processor.NewFiltered[string](processor.CommittableOf(p1, 9), time.Time{}))
		}, commitCall{processor.CommittableOf(p1, 9), false}},
		{"poll commits nothing new", s.Poll, commitCall{processor.Committable{}, false}},
		{"join forces", func() error { return s.Join(context.Background()) }, commitCall{processor.Committable{}, true}},
	}
	for i, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: error %v", st.name, err)
		}
		if len(log.calls) != i+1 {
			t.Fatalf("%s: %d commit calls, want %d", st.name, len(log.calls), i+1)
		}
		got := log.calls[i]
		if !got.offsets.Equal(st.want.offsets) || got.force != st.want.force {
			t.Fatalf("%s: commit(%s, %v), want commit(%s, %v)", st.name, got.offsets, got.force, st.want.offsets, st.want.force)
		}
	}
}

func TestCommitOffsetsTerminateSkipsFinalCommit(t *testing.T) {
	var log commitLog
	s := NewCommitOffsets[int](log.commit)
	s.Terminate()
	if err := s.Join(context.Background()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	if len(log.calls) != 0 {
		t.Fatalf("commit called %d times after Terminate, want 0", len(log.calls))
	}
}

func TestCommitOffsetsWrapsCommitError(t *testing.T) {
	errBroker := errors.New("broker gone")
	s := NewCommitOffsets[int](func(processor.Committable, bool) error { return errBroker })
	p := processor.Partition{Topic: "t"}
	for name, err := range map[string]error{
		"submit": s.Submit(processor.NewBrokerMessage(1, p, 0, time.Time{})),
		"poll":   s.Poll(),
		"join":   s.Join(context.Background()),
	} {
		if !errors.Is(err, errBroker) {
			t.Errorf("%s: error %v, want one wrapping %v", name, err, errBroker)
		}
	}
}

func TestCommitOffsetsRecordsLatencyOncePerSecond(t *testing.T) {
	clock := newManualClock()
	m := newCountMetrics()
	var log commitLog
	s := NewCommitOffsets[int](log.commit, WithClock(clock.now), WithMetrics(m))
	p := processor.Partition{Topic: "t"}

	submit := func(offset int64, age time.Duration) {
		t.Helper()
		if err := s.Submit(processor.NewBrokerMessage(0, p, offset, clock.now().Add(-age))); err != nil {
			t.Fatalf("Submit = %v", err)
		}
	}
	submit(0, 3*time.Second) // recorded
	clock.advance(500 * time.Millisecond)
	submit(1, time.Second) // within the second: skipped
	clock.advance(500 * time.Millisecond)
	submit(2, 2*time.Second) // a second later: recorded

	got := m.timingsOf("consumer.latency")
	want := []time.Duration{3 * time.Second, 2 * time.Second}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("consumer.latency = %v, want %v", got, want)
	}
	if len(log.calls) != 3 {
		t.Fatalf("%d commits, want every message committed (3)", len(log.calls))
	}
}
