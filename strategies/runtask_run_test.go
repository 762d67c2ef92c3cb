package strategies

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

// runRecorder is a recorder that takes runs, one message at a time through Submit,
// as a RunSubmitter does.
type runRecorder[T any] struct {
	recorder[T]
	runs int
}

func (r *runRecorder[T]) SubmitRun(msgs []processor.Message[T]) (int, error) {
	r.runs++
	for i, m := range msgs {
		if err := r.Submit(m); err != nil {
			if _, ok := processor.AsInvalid(err); ok {
				return i + 1, err
			}
			return i, err
		}
	}
	return len(msgs), nil
}

func brokerRun(p processor.Partition, from, n int64) []processor.Message[int] {
	var run []processor.Message[int]
	for o := from; o < from+n; o++ {
		run = append(run, processor.NewBrokerMessage(int(o), p, o, time.Time{}))
	}
	return run
}

// A run the next step rejects part of is held, mapped once, and handed on in
// order by the next polls; meanwhile RunTask rejects.
func TestRunTaskSubmitRunHoldsWhatTheNextStepRejects(t *testing.T) {
	p := processor.Partition{Topic: "t"}
	next := &runRecorder[int]{}
	next.reject = func(m processor.Message[int]) bool { return m.Payload >= 13 } // offset 3 on
	calls := map[int]int{}
	s := NewRunTask(func(_ context.Context, m processor.Message[int]) (int, error) {
		calls[m.Payload]++
		return m.Payload + 10, nil
	}, processor.Strategy[int](next))

	n, err := s.SubmitRun(brokerRun(p, 0, 6))
	if n != 6 || err != nil {
		t.Fatalf("SubmitRun = %d, %v; want 6, nil: the rejected results are held", n, err)
	}
	if got := payloadsOf(next.messages()); !slices.Equal(got, []int{10, 11, 12}) {
		t.Fatalf("next got %v, want [10 11 12]", got)
	}
	if n, err := s.SubmitRun(brokerRun(p, 6, 2)); n != 0 || !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("SubmitRun while holding = %d, %v; want 0, ErrMessageRejected", n, err)
	}
	if err := s.Submit(brokerRun(p, 6, 1)[0]); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit while holding = %v; want ErrMessageRejected", err)
	}
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	next.mu.Lock()
	next.reject = nil
	next.mu.Unlock()
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	if got := payloadsOf(next.messages()); !slices.Equal(got, []int{10, 11, 12, 13, 14, 15}) {
		t.Fatalf("next got %v, want every result once, in order", got)
	}
	for o := range 6 {
		if calls[o] != 1 {
			t.Errorf("fn ran %d times on offset %d, want once", calls[o], o)
		}
	}
	if n, err := s.SubmitRun(brokerRun(p, 6, 2)); n != 2 || err != nil {
		t.Fatalf("SubmitRun after the held run went on = %d, %v; want 2, nil", n, err)
	}
}

// An invalid message counts as taken: the results before it are handed on, and
// the caller goes on after it.
func TestRunTaskSubmitRunInvalidMessage(t *testing.T) {
	p := processor.Partition{Topic: "t"}
	next := &runRecorder[int]{}
	s := NewRunTask(func(_ context.Context, m processor.Message[int]) (int, error) {
		if m.Payload == 2 {
			return 0, processor.Invalid(m, errors.New("bad"))
		}
		return m.Payload, nil
	}, processor.Strategy[int](next))
	n, err := s.SubmitRun(brokerRun(p, 0, 5))
	inv, ok := processor.AsInvalid(err)
	if n != 3 || !ok || inv.Offset != 2 {
		t.Fatalf("SubmitRun = %d, %v; want 3 and the invalid message at offset 2", n, err)
	}
	if got := payloadsOf(next.messages()); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("next got %v, want [0 1]", got)
	}
	if n, err := s.SubmitRun(brokerRun(p, 3, 2)); n != 2 || err != nil {
		t.Fatalf("SubmitRun of the rest = %d, %v", n, err)
	}
	if got := payloadsOf(next.messages()); !slices.Equal(got, []int{0, 1, 3, 4}) {
		t.Fatalf("next got %v, want [0 1 3 4]", got)
	}
}

// When the next step reports an invalid result and fn fails later in the same
// run, the first error comes back at once and fn's from the next Poll.
func TestRunTaskSubmitRunDefersASecondError(t *testing.T) {
	p := processor.Partition{Topic: "t"}
	boom := errors.New("boom")
	next := &runRecorder[int]{}
	s := NewRunTask(func(_ context.Context, m processor.Message[int]) (int, error) {
		if m.Payload == 3 {
			return 0, boom
		}
		return m.Payload, nil
	}, processor.Strategy[int](&invalidAt1{next}))
	n, err := s.SubmitRun(brokerRun(p, 0, 5))
	if inv, ok := processor.AsInvalid(err); !ok || inv.Offset != 1 || n != 3 {
		t.Fatalf("SubmitRun = %d, %v; want 3 and the invalid result at offset 1", n, err)
	}
	if err := s.Poll(); !errors.Is(err, boom) {
		t.Fatalf("Poll = %v, want fn's error %v", err, boom)
	}
	if got := payloadsOf(next.messages()); !slices.Equal(got, []int{0, 2}) {
		t.Fatalf("next got %v, want [0 2]", got)
	}
}

// invalidAt1 reports the result of offset 1 invalid.
type invalidAt1 struct{ *runRecorder[int] }

func (s *invalidAt1) SubmitRun(msgs []processor.Message[int]) (int, error) {
	for i, m := range msgs {
		if pos, _ := m.Origin(); pos.Offset == 1 {
			n, err := s.runRecorder.SubmitRun(msgs[:i])
			if err != nil {
				return n, err
			}
			return i + 1, processor.Invalid(m, errors.New("bad result"))
		}
	}
	return s.runRecorder.SubmitRun(msgs)
}

// Join hands the held results on before it joins the next step.
func TestRunTaskJoinFlushesAHeldRun(t *testing.T) {
	p := processor.Partition{Topic: "t"}
	next := &runRecorder[int]{}
	// The run's first offer and Join's first two are rejected.
	rejections := 0
	next.reject = func(processor.Message[int]) bool { rejections++; return rejections <= 3 }
	s := NewRunTask(func(_ context.Context, m processor.Message[int]) (int, error) { return m.Payload, nil },
		processor.Strategy[int](next))
	if n, err := s.SubmitRun(brokerRun(p, 0, 3)); n != 3 || err != nil {
		t.Fatalf("SubmitRun = %d, %v", n, err)
	}
	if len(next.messages()) != 0 {
		t.Fatal("the next step took a message it rejected")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if got := payloadsOf(next.messages()); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("next got %v after Join, want [0 1 2]", got)
	}
}

// CommitOffsets stages a partition's run once, and each partition of a mixed
// run in order.
func TestCommitOffsetsSubmitRunStagesARunOnce(t *testing.T) {
	p0 := processor.Partition{Topic: "t", Index: 0}
	p1 := processor.Partition{Topic: "t", Index: 1}
	var log commitLog
	s := NewCommitOffsets[int](log.commit)
	run := append(brokerRun(p0, 4, 3), brokerRun(p1, 0, 2)...)
	run = append(run, processor.NewFiltered[int](processor.CommittableFromMap(map[processor.Partition]int64{p0: 9, p1: 5}), time.Time{}))
	if n, err := s.SubmitRun(run); n != len(run) || err != nil {
		t.Fatalf("SubmitRun = %d, %v", n, err)
	}
	want := []processor.Committable{
		processor.CommittableOf(p0, 7),
		processor.CommittableOf(p1, 2),
		processor.CommittableFromMap(map[processor.Partition]int64{p0: 9, p1: 5}),
	}
	if len(log.calls) != len(want) {
		t.Fatalf("%d commit calls %v, want %d", len(log.calls), log.calls, len(want))
	}
	for i, w := range want {
		if c := log.calls[i]; !c.offsets.Equal(w) || c.force {
			t.Errorf("commit call %d = (%s, %v), want (%s, false)", i, c.offsets, c.force, w)
		}
	}
}
