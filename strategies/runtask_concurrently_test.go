package strategies

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
	"go.uber.org/goleak"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 5 * time.Second

// waitClosed fails the test unless ch is closed within waitTimeout.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
	}
}

// gates lets a test decide when fn returns for each payload.
type gates struct {
	mu sync.Mutex
	m  map[int]chan struct{}
}

func newGates() *gates { return &gates{m: map[int]chan struct{}{}} }

func (g *gates) gate(k int) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m[k] == nil {
		g.m[k] = make(chan struct{})
	}
	return g.m[k]
}

func (g *gates) open(ks ...int) {
	for _, k := range ks {
		close(g.gate(k))
	}
}

// fn blocks until the payload's gate opens, then returns payload * 10.
func (g *gates) fn(_ context.Context, m processor.Message[int]) (int, error) {
	<-g.gate(m.Payload)
	return m.Payload * 10, nil
}

// taskDone returns the done channel of the i-th task in flight, or a closed channel if
// that task needs no worker.
func taskDone[T, U any](t *testing.T, s *RunTaskConcurrently[T, U], i int) <-chan struct{} {
	t.Helper()
	if i >= s.pending.Len() {
		t.Fatalf("want task %d in flight, have %d", i, s.pending.Len())
	}
	if d := s.pending.At(i).done; d != nil {
		return d
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

func payloadsOf[T any](msgs []processor.Message[T]) []T {
	out := make([]T, len(msgs))
	for i, m := range msgs {
		out[i] = m.Payload
	}
	return out
}

func mustConcurrently[T, U any](t *testing.T, fn func(context.Context, processor.Message[T]) (U, error), concurrency, maxPending int, next processor.Strategy[U], opts ...Option) *RunTaskConcurrently[T, U] {
	t.Helper()
	s, err := NewRunTaskConcurrently(fn, concurrency, maxPending, next, opts...)
	if err != nil {
		t.Fatalf("NewRunTaskConcurrently = %v", err)
	}
	return s
}

func TestRunTaskConcurrentlyKeepsSubmitOrder(t *testing.T) {
	defer goleak.VerifyNone(t)
	next := &recorder[int]{}
	g := newGates()
	s := mustConcurrently(t, g.fn, 4, 10, next)
	for i := range 4 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	filtered := processor.NewFiltered[int](processor.CommittableOf(tp0, 5), time.Unix(4, 0))
	if err := s.Submit(filtered); err != nil {
		t.Fatalf("Submit(filtered) = %v", err)
	}
	g.open(3, 2, 1, 0) // complete in reverse
	s.Close()
	if err := s.Join(context.Background()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	got := next.messages()
	checkCommittables(t, got, processor.CommittableOf(tp0, 1), processor.CommittableOf(tp0, 2),
		processor.CommittableOf(tp0, 3), processor.CommittableOf(tp0, 4), processor.CommittableOf(tp0, 5))
	if p := payloadsOf(got); p[0] != 0 || p[1] != 10 || p[2] != 20 || p[3] != 30 || !got[4].Filtered() {
		t.Fatalf("forwarded %v (last filtered=%v), want 0 10 20 30 then the filtered message", p, got[4].Filtered())
	}
	checkJoined(t, next)
}

func TestRunTaskConcurrentlyMaxPending(t *testing.T) {
	defer goleak.VerifyNone(t)
	next := &recorder[int]{}
	g := newGates()
	s := mustConcurrently(t, g.fn, 2, 3, next)
	defer s.Terminate()
	for i := range 3 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) with %d in flight = %v, want nil", i, i, err)
		}
	}
	if err := s.Submit(brokerMsg(3, tp0, 3)); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit with maxPending in flight = %v, want ErrMessageRejected", err)
	}
	g.open(0)
	waitClosed(t, taskDone(t, s, 0), "task 0")
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if err := s.Submit(brokerMsg(3, tp0, 3)); err != nil {
		t.Fatalf("Submit after one result went = %v, want nil", err)
	}
	if err := s.Submit(brokerMsg(4, tp0, 4)); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit with maxPending in flight again = %v, want ErrMessageRejected", err)
	}
	g.open(1, 2, 3)
}

func TestRunTaskConcurrentlyPollForwardsReadyHead(t *testing.T) {
	defer goleak.VerifyNone(t)
	next := &recorder[int]{}
	g := newGates()
	s := mustConcurrently(t, g.fn, 3, 10, next)
	for i := range 3 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	done1, done2 := taskDone(t, s, 1), taskDone(t, s, 2)
	g.open(0, 2)
	waitClosed(t, taskDone(t, s, 0), "task 0")
	waitClosed(t, done2, "task 2")
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if p := payloadsOf(next.messages()); len(p) != 1 || p[0] != 0 {
		t.Fatalf("forwarded %v while task 1 runs, want [0]: task 2 must wait its turn", p)
	}
	g.open(1)
	waitClosed(t, done1, "task 1")
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if p := payloadsOf(next.messages()); len(p) != 3 || p[1] != 10 || p[2] != 20 {
		t.Fatalf("forwarded %v, want [0 10 20]", p)
	}
	s.Close()
	if err := s.Join(doneCtx()); err != nil {
		t.Fatalf("Join = %v", err)
	}
}

func TestRunTaskConcurrentlyInvalidInOrder(t *testing.T) {
	defer goleak.VerifyNone(t)
	next := &recorder[int]{}
	boom := errors.New("boom")
	fn := func(_ context.Context, m processor.Message[int]) (int, error) {
		if m.Payload == 1 {
			return 0, processor.Invalid(m, boom)
		}
		return m.Payload, nil
	}
	s := mustConcurrently(t, fn, 2, 10, next)
	for i := range 3 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	for i := range 3 {
		waitClosed(t, taskDone(t, s, i), "every task")
	}
	err := s.Poll()
	if inv, ok := processor.AsInvalid(err); !ok || inv.Offset != 1 {
		t.Fatalf("Poll = %v, want the invalid message at offset 1", err)
	}
	if p := payloadsOf(next.messages()); len(p) != 1 {
		t.Fatalf("forwarded %v before the invalid message, want [0]", p)
	}
	if err := s.Poll(); err != nil {
		t.Fatalf("second Poll = %v, want nil", err)
	}
	checkCommittables(t, next.messages(), processor.CommittableOf(tp0, 1), processor.CommittableOf(tp0, 3))
	s.Close()
	if err := s.Join(doneCtx()); err != nil {
		t.Fatalf("Join = %v", err)
	}
}

// A task that returns ErrMessageRejected must stop the processor, not read as the
// next step's backpressure: that would drop the message and commit past it.
func TestRunTaskConcurrentlyTaskRejectionIsFatal(t *testing.T) {
	defer goleak.VerifyNone(t)
	next := &recorder[int]{}
	fn := func(_ context.Context, m processor.Message[int]) (int, error) {
		if m.Payload == 1 {
			return 0, processor.ErrMessageRejected
		}
		return m.Payload, nil
	}
	s := mustConcurrently(t, fn, 2, 10, next)
	for i := range 3 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	for i := range 3 {
		waitClosed(t, taskDone(t, s, i), "every task")
	}
	err := s.Poll()
	if err == nil || errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Poll = %v, want a fatal error that is not a rejection", err)
	}
	checkCommittables(t, next.messages(), processor.CommittableOf(tp0, 1))
	s.Terminate()
}

func TestRunTaskConcurrentlyBackpressure(t *testing.T) {
	defer goleak.VerifyNone(t)
	next := &recorder[int]{}
	m := newCountMetrics()
	var calls atomic.Int32
	fn := func(_ context.Context, msg processor.Message[int]) (int, error) {
		calls.Add(1)
		return msg.Payload, nil
	}
	s := mustConcurrently(t, fn, 2, 10, next, WithMetrics(m))
	next.rejectAll(true)
	for i := range 2 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	waitClosed(t, taskDone(t, s, 0), "task 0")
	waitClosed(t, taskDone(t, s, 1), "task 1")
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if n := m.counter("strategies.run_task_concurrently.backpressure"); n != 1 {
		t.Fatalf("backpressure = %d, want 1", n)
	}
	next.rejectAll(false)
	s.Close()
	if err := s.Join(context.Background()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	if p := payloadsOf(next.messages()); len(p) != 2 || calls.Load() != 2 {
		t.Fatalf("forwarded %v with fn run %d times, want 2 messages and 2 runs", p, calls.Load())
	}
}

func TestRunTaskConcurrentlyJoinAbandons(t *testing.T) {
	defer goleak.VerifyNone(t)
	next := &recorder[int]{}
	g := newGates()
	s := mustConcurrently(t, g.fn, 2, 10, next)
	for i := range 3 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	g.open(0)
	waitClosed(t, taskDone(t, s, 0), "task 0")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	s.Close()
	if err := s.Join(ctx); err != nil {
		t.Fatalf("Join = %v, want nil: running out of time is not an error", err)
	}
	checkCommittables(t, next.messages(), processor.CommittableOf(tp0, 1))
	checkJoined(t, next)
	g.open(1, 2) // the workers stuck in fn exit once it returns
}

func TestRunTaskConcurrentlyTerminate(t *testing.T) {
	defer goleak.VerifyNone(t)
	next := &recorder[int]{}
	g := newGates()
	s := mustConcurrently(t, g.fn, 2, 10, next)
	for i := range 4 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	s.Terminate()
	g.open(0, 1, 2, 3)
	if n := len(next.messages()); n != 0 {
		t.Fatalf("forwarded %d messages after Terminate, want 0", n)
	}
	if !next.terminated {
		t.Fatal("next step not terminated")
	}
	if err := s.Submit(brokerMsg(4, tp0, 4)); !errors.Is(err, errStopped) {
		t.Fatalf("Submit after Terminate = %v, want errStopped", err)
	}
}

func TestRunTaskConcurrentlyConfig(t *testing.T) {
	fn := func(_ context.Context, m processor.Message[int]) (int, error) { return m.Payload, nil }
	next := processor.Strategy[int](&recorder[int]{})
	if _, err := NewRunTaskConcurrently(fn, 0, 1, next); err == nil {
		t.Error("NewRunTaskConcurrently(concurrency 0) = nil error")
	}
	if _, err := NewRunTaskConcurrently(fn, 1, 0, next); err == nil {
		t.Error("NewRunTaskConcurrently(maxPending 0) = nil error")
	}
	for _, cfg := range []ParallelBatchConfig{
		{Concurrency: 0, MaxPendingBatches: 1, MaxBatchSize: 1, MaxBatchWait: time.Second},
		{Concurrency: 1, MaxPendingBatches: 0, MaxBatchSize: 1, MaxBatchWait: time.Second},
		{Concurrency: 1, MaxPendingBatches: 1, MaxBatchSize: 0, MaxBatchWait: time.Second},
		{Concurrency: 1, MaxPendingBatches: 1, MaxBatchSize: 1},
	} {
		if _, err := NewRunTaskInBatches(fn, cfg, next); err == nil {
			t.Errorf("NewRunTaskInBatches(%+v) = nil error", cfg)
		}
	}
}

func mustBatches[T, U any](t *testing.T, fn func(context.Context, processor.Message[T]) (U, error), cfg ParallelBatchConfig, next processor.Strategy[U], opts ...Option) *RunTaskConcurrently[T, U] {
	t.Helper()
	s, err := NewRunTaskInBatches(fn, cfg, next, opts...)
	if err != nil {
		t.Fatalf("NewRunTaskInBatches = %v", err)
	}
	return s
}

func TestRunTaskInBatches(t *testing.T) {
	defer goleak.VerifyNone(t)
	next := &recorder[int]{}
	m := newCountMetrics()
	clock := newManualClock()
	var calls atomic.Int32
	fn := func(_ context.Context, msg processor.Message[int]) (int, error) {
		calls.Add(1)
		return msg.Payload * 10, nil
	}
	s := mustBatches(t, fn, ParallelBatchConfig{Concurrency: 2, MaxPendingBatches: 4, MaxBatchSize: 3, MaxBatchWait: time.Second},
		next, WithMetrics(m), WithClock(clock.now))
	for i := range 7 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	if got := m.gaugesOf("strategies.run_task_concurrently.batch.size"); len(got) != 2 || got[0] != 3 || got[1] != 3 {
		t.Fatalf("batch sizes %v, want [3 3] with the 7th message still collecting", got)
	}
	clock.advance(time.Second)
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if got := m.gaugesOf("strategies.run_task_concurrently.batch.size"); len(got) != 3 || got[2] != 1 {
		t.Fatalf("batch sizes %v, want [3 3 1] once MaxBatchWait passed", got)
	}
	s.Close()
	if err := s.Join(context.Background()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	p := payloadsOf(next.messages())
	for i, v := range p {
		if v != i*10 {
			t.Fatalf("forwarded %v, want 0 10 ... 60 in submit order", p)
		}
	}
	if len(p) != 7 || calls.Load() != 7 {
		t.Fatalf("forwarded %d with fn run %d times, want 7 and 7", len(p), calls.Load())
	}
}

func TestRunTaskInBatchesBackpressureResumesRemainder(t *testing.T) {
	defer goleak.VerifyNone(t)
	next := &recorder[int]{}
	var calls atomic.Int32
	fn := func(_ context.Context, msg processor.Message[int]) (int, error) {
		calls.Add(1)
		return msg.Payload, nil
	}
	s := mustBatches(t, fn, ParallelBatchConfig{Concurrency: 1, MaxPendingBatches: 1, MaxBatchSize: 4, MaxBatchWait: time.Hour}, next)
	// Take two, then reject the third twice.
	n := 0
	next.reject = func(processor.Message[int]) bool { n++; return n == 3 || n == 4 }
	for i := range 4 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	// The batch is full and in flight: a fifth message opens a new batch, which
	// fills only later.
	if err := s.Submit(brokerMsg(4, tp0, 4)); err != nil {
		t.Fatalf("Submit(4) = %v", err)
	}
	waitClosed(t, taskDone(t, s, 0), "the first batch")
	for i := range 2 {
		if err := s.Poll(); err != nil {
			t.Fatalf("Poll %d = %v", i, err)
		}
	}
	if p := payloadsOf(next.messages()); len(p) != 2 {
		t.Fatalf("forwarded %v while the third is rejected, want [0 1]", p)
	}
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v", err)
	}
	if p := payloadsOf(next.messages()); len(p) != 4 || p[2] != 2 || p[3] != 3 {
		t.Fatalf("forwarded %v, want [0 1 2 3]: only the remainder is offered again", p)
	}
	s.Close()
	if err := s.Join(context.Background()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	if p := payloadsOf(next.messages()); len(p) != 5 || calls.Load() != 5 {
		t.Fatalf("forwarded %v with fn run %d times, want 5 and 5", p, calls.Load())
	}
}

func TestRunTaskInBatchesRejectsWhenFull(t *testing.T) {
	defer goleak.VerifyNone(t)
	next := &recorder[int]{}
	g := newGates()
	m := newCountMetrics()
	s := mustBatches(t, g.fn, ParallelBatchConfig{Concurrency: 1, MaxPendingBatches: 1, MaxBatchSize: 2, MaxBatchWait: time.Hour}, next, WithMetrics(m))
	for i := range 4 {
		if err := s.Submit(brokerMsg(i, tp0, int64(i))); err != nil {
			t.Fatalf("Submit(%d) = %v", i, err)
		}
	}
	if err := s.Submit(brokerMsg(4, tp0, 4)); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit with a full batch and no room = %v, want ErrMessageRejected", err)
	}
	if n := m.counter("strategies.run_task_concurrently.batch.backpressure"); n < 1 {
		t.Fatalf("batch.backpressure = %d, want at least 1", n)
	}
	g.open(0, 1, 2, 3)
	s.Close()
	if err := s.Join(context.Background()); err != nil {
		t.Fatalf("Join = %v", err)
	}
	if p := payloadsOf(next.messages()); len(p) != 4 {
		t.Fatalf("forwarded %v, want the 4 accepted messages", p)
	}
}
