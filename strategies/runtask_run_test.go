package strategies

import (
	"context"
	"errors"
	"slices"
	"strconv"
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

// A run with a filtered message and one whose context was cancelled when fn failed
// comes out the same whether RunTask maps in place (one type in and out) or
// copies (two types): the filtered message passes, the abandoned one is dropped,
// and the caller's messages keep their offsets.
func TestRunTaskSubmitRunFilteredAndAbandoned(t *testing.T) {
	p := processor.Partition{Topic: "t"}
	run := func() []processor.Message[int] {
		msgs := brokerRun(p, 0, 6)
		msgs[1] = processor.NewFiltered[int](msgs[1].Committable, time.Time{})
		gone, cancel := context.WithCancel(context.Background())
		cancel()
		msgs[3] = msgs[3].WithContext(gone)
		return msgs
	}
	fn := func(_ context.Context, m processor.Message[int]) (int, error) {
		if m.Context().Err() != nil {
			return 0, m.Context().Err()
		}
		return m.Payload * 10, nil
	}

	t.Run("same type", func(t *testing.T) {
		next := &runRecorder[int]{}
		s := NewRunTask(fn, processor.Strategy[int](next))
		msgs := run()
		if n, err := s.SubmitRun(msgs); n != 6 || err != nil {
			t.Fatalf("SubmitRun = %d, %v; want 6, nil", n, err)
		}
		checkHandedOn(t, next.messages(), []int{0, 0, 20, 40, 50})
		for i, m := range msgs {
			if _, o, _ := m.Committable.Single(); o != int64(i+1) {
				t.Fatalf("the caller's message %d commits %d after SubmitRun, want %d", i, o, i+1)
			}
		}
	})
	t.Run("two types", func(t *testing.T) {
		next := &runRecorder[string]{}
		s := NewRunTask(func(ctx context.Context, m processor.Message[int]) (string, error) {
			v, err := fn(ctx, m)
			return strconv.Itoa(v), err
		}, processor.Strategy[string](next))
		if n, err := s.SubmitRun(run()); n != 6 || err != nil {
			t.Fatalf("SubmitRun = %d, %v; want 6, nil", n, err)
		}
		checkHandedOn(t, next.messages(), []string{"0", "", "20", "40", "50"})
	})
}

// checkHandedOn checks what TestRunTaskSubmitRunFilteredAndAbandoned's run hands
// on: every message but the abandoned fourth, in order, the second filtered, with
// the payloads want.
func checkHandedOn[U comparable](t *testing.T, got []processor.Message[U], want []U) {
	t.Helper()
	var offsets []int64
	var filtered []bool
	for _, m := range got {
		_, o, _ := m.Committable.Single()
		offsets, filtered = append(offsets, o), append(filtered, m.Filtered())
	}
	if !slices.Equal(offsets, []int64{1, 2, 3, 5, 6}) || !slices.Equal(filtered, []bool{false, true, false, false, false}) {
		t.Fatalf("next got offsets %v, filtered %v; want [1 2 3 5 6] with the second filtered", offsets, filtered)
	}
	if pl := payloadsOf(got); !slices.Equal(pl, want) {
		t.Fatalf("next got payloads %v, want %v", pl, want)
	}
}
