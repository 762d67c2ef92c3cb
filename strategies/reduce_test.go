package strategies

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

type intSet map[int]struct{}

func addToSet(s intSet, m processor.Message[int]) (intSet, error) {
	s[m.Payload] = struct{}{}
	return s, nil
}

func newSet() intSet { return intSet{} }

func sorted(s intSet) []int { return slices.Sorted(maps.Keys(s)) }

func TestReduceSetAccumulator(t *testing.T) {
	next := &recorder[intSet]{}
	m := newCountMetrics()
	s, err := NewReduce(BatchLimits[int]{MaxSize: 3, MaxWait: time.Hour}, addToSet, newSet, next, WithMetrics(m))
	if err != nil {
		t.Fatalf("NewReduce = %v", err)
	}
	for i := range 6 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	got := next.messages()
	checkCommittables(t, got, processor.CommittableOf(tp0, 3), processor.CommittableOf(tp0, 6))
	if !slices.Equal(sorted(got[0].Payload), []int{0, 1, 2}) || !slices.Equal(sorted(got[1].Payload), []int{3, 4, 5}) {
		t.Fatalf("batches %v %v, want {0,1,2} {3,4,5}", sorted(got[0].Payload), sorted(got[1].Payload))
	}
	if !got[1].Timestamp.Equal(time.Unix(5, 0)) {
		t.Fatalf("second batch timestamp %v, want the latest message's %v", got[1].Timestamp, time.Unix(5, 0))
	}
	if n := len(m.timingsOf("strategies.reduce.batch_time")); n != 2 {
		t.Fatalf("recorded batch_time %d times, want 2", n)
	}
}

func TestReduceEmitsOnTime(t *testing.T) {
	next := &recorder[intSet]{}
	clock := newManualClock()
	s, err := NewReduce(BatchLimits[int]{MaxSize: 100, MaxWait: time.Second}, addToSet, newSet, next, WithClock(clock.now))
	if err != nil {
		t.Fatalf("NewReduce = %v", err)
	}
	for i := range 2 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	clock.advance(999 * time.Millisecond)
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if n := len(next.messages()); n != 0 {
		t.Fatalf("emitted %d batches before MaxWait, want 0", n)
	}
	clock.advance(time.Millisecond)
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	checkCommittables(t, next.messages(), processor.CommittableOf(tp0, 2))
}

func TestReduceBackpressureKeepsBatch(t *testing.T) {
	next := &recorder[intSet]{}
	calls := 0
	acc := func(s intSet, m processor.Message[int]) (intSet, error) { calls++; return addToSet(s, m) }
	s, err := NewReduce(BatchLimits[int]{MaxSize: 2}, acc, newSet, next)
	if err != nil {
		t.Fatalf("NewReduce = %v", err)
	}
	next.rejectAll(true)
	for i := range 2 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v, want nil (batch carried)", i, err)
		}
	}
	if err := s.Submit(brokerMsg(2, tp0, 2)); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit while carrying = %v, want ErrMessageRejected", err)
	}
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	next.rejectAll(false)
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if err := s.Submit(brokerMsg(2, tp0, 2)); err != nil {
		t.Fatalf("Submit after the batch went = %v", err)
	}
	if calls != 3 {
		t.Fatalf("accumulate ran %d times for 3 messages, want 3", calls)
	}
	checkCommittables(t, next.messages(), processor.CommittableOf(tp0, 2))
}

func TestReduceFiltered(t *testing.T) {
	next := &recorder[intSet]{}
	s, err := NewReduce(BatchLimits[int]{MaxSize: 2}, addToSet, newSet, next)
	if err != nil {
		t.Fatalf("NewReduce = %v", err)
	}
	steps := []processor.Message[int]{
		processor.NewFiltered[int](processor.CommittableOf(tp0, 1), time.Unix(0, 0)), // no batch: forwarded
		brokerMsg(1, tp0, 1),
		processor.NewFiltered[int](processor.CommittableOf(tp1, 5), time.Unix(4, 0)), // joins the batch
		brokerMsg(2, tp0, 2),
	}
	for i, m := range steps {
		if err := s.Submit(m); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	got := next.messages()
	checkCommittables(t, got, processor.CommittableOf(tp0, 1), processor.CommittableFromMap(map[processor.Partition]int64{tp0: 3, tp1: 5}))
	if !got[0].Filtered() || got[1].Filtered() {
		t.Fatalf("filtered flags %v %v, want true false", got[0].Filtered(), got[1].Filtered())
	}
	if !slices.Equal(sorted(got[1].Payload), []int{1, 2}) {
		t.Fatalf("batch %v, want {1,2}: filtered messages must not be accumulated", sorted(got[1].Payload))
	}
}

func TestReduceAccumulateError(t *testing.T) {
	next := &recorder[intSet]{}
	boom := errors.New("boom")
	acc := func(s intSet, m processor.Message[int]) (intSet, error) {
		if m.Payload < 0 {
			return nil, processor.Invalid(m, boom)
		}
		return addToSet(s, m)
	}
	s, err := NewReduce(BatchLimits[int]{MaxSize: 2}, acc, newSet, next)
	if err != nil {
		t.Fatalf("NewReduce = %v", err)
	}
	if err := s.Submit(brokerMsg(1, tp0, 0)); err != nil {
		t.Fatalf("Submit = %v", err)
	}
	if err := s.Submit(brokerMsg(-1, tp0, 1)); !errors.Is(err, boom) {
		t.Fatalf("Submit(bad) = %v, want %v", err, boom)
	}
	if err := s.Submit(brokerMsg(2, tp0, 2)); err != nil {
		t.Fatalf("Submit = %v", err)
	}
	got := next.messages()
	checkCommittables(t, got, processor.CommittableOf(tp0, 3))
	if !slices.Equal(sorted(got[0].Payload), []int{1, 2}) {
		t.Fatalf("batch %v, want {1,2}", sorted(got[0].Payload))
	}
}

func TestReduceJoin(t *testing.T) {
	tests := []struct {
		name       string
		ctx        func() context.Context
		rejections int
		want       int
	}{
		{"flushes partial batch", context.Background, 0, 1},
		{"retries until accepted", context.Background, 2, 1},
		{"done ctx abandons", doneCtx, 1 << 30, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &recorder[intSet]{}
			s, err := NewReduce(BatchLimits[int]{MaxSize: 10}, addToSet, newSet, next)
			if err != nil {
				t.Fatalf("NewReduce = %v", err)
			}
			if err := s.Submit(brokerMsg(1, tp0, 4)); err != nil {
				t.Fatalf("Submit = %v", err)
			}
			rejectTimes(next, tt.rejections)
			s.Close()
			if err := s.Join(tt.ctx()); err != nil {
				t.Fatalf("Join = %v", err)
			}
			if n := len(next.messages()); n != tt.want {
				t.Fatalf("emitted %d batches, want %d", n, tt.want)
			}
			checkJoined(t, next)
		})
	}
}

func TestReduceLimitsValidated(t *testing.T) {
	tests := []BatchLimits[int]{{}, {MaxSize: -1, MaxWait: time.Second}, {MaxSize: 1, MaxWait: -time.Second}}
	for _, l := range tests {
		if _, err := NewReduce(l, addToSet, newSet, processor.Strategy[intSet](&recorder[intSet]{})); err == nil {
			t.Errorf("NewReduce(%+v) = nil error, want one saying what to fix", l)
		}
	}
}
