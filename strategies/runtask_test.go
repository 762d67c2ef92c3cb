package strategies

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
)

var (
	tp0 = processor.Partition{Topic: "t", Index: 0}
	tp1 = processor.Partition{Topic: "t", Index: 1}
)

// brokerMsg returns the message read from p at offset, timestamped offset seconds.
func brokerMsg[T any](v T, p processor.Partition, offset int64) processor.Message[T] {
	return processor.NewBrokerMessage(v, p, offset, time.Unix(offset, 0))
}

// doneCtx returns a context that is already done, for a Join that must not wait.
func doneCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// rejectTimes makes r reject the next n messages offered to it.
func rejectTimes[T any](r *recorder[T], n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reject = func(processor.Message[T]) bool {
		if n > 0 {
			n--
			return true
		}
		return false
	}
}

// countMetrics records counter sums, gauges and timings for assertions.
type countMetrics struct {
	mu       sync.Mutex
	counters map[string]int64
	gauges   map[string][]float64
	timings  map[string][]time.Duration
}

func newCountMetrics() *countMetrics {
	return &countMetrics{counters: map[string]int64{}, gauges: map[string][]float64{}, timings: map[string][]time.Duration{}}
}

func (m *countMetrics) Increment(name string, v int64, _ ...metrics.Tag) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counters[name] += v
}

func (m *countMetrics) Gauge(name string, v float64, _ ...metrics.Tag) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gauges[name] = append(m.gauges[name], v)
}

func (m *countMetrics) Timing(name string, d time.Duration, _ ...metrics.Tag) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.timings[name] = append(m.timings[name], d)
}

func (m *countMetrics) counter(name string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counters[name]
}

func (m *countMetrics) timingsOf(name string) []time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Duration(nil), m.timings[name]...)
}

func (m *countMetrics) gaugesOf(name string) []float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]float64(nil), m.gauges[name]...)
}

// manualClock is a clock that moves only when told to.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newManualClock() *manualClock { return &manualClock{t: time.Unix(1000, 0)} }

func (c *manualClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// checkJoined fails unless r was closed and joined and not terminated.
func checkJoined[T any](t *testing.T, r *recorder[T]) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed || !r.joined || r.terminated {
		t.Fatalf("next step closed=%v joined=%v terminated=%v, want closed and joined only", r.closed, r.joined, r.terminated)
	}
}

// checkCommittables fails unless msgs carry want, in order.
func checkCommittables[T any](t *testing.T, msgs []processor.Message[T], want ...processor.Committable) {
	t.Helper()
	if len(msgs) != len(want) {
		t.Fatalf("got %d messages, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if !m.Committable.Equal(want[i]) {
			t.Fatalf("message %d committable = %v, want %v", i, m.Committable, want[i])
		}
	}
}

func TestRunTaskMapsAndKeepsOrigin(t *testing.T) {
	next := &recorder[int]{}
	s := NewRunTask(func(_ context.Context, m processor.Message[string]) (int, error) { return len(m.Payload), nil }, next)

	in := brokerMsg("abc", tp0, 7)
	if err := s.Submit(in); err != nil {
		t.Fatalf("Submit = %v, want nil", err)
	}
	got := next.messages()
	if len(got) != 1 || got[0].Payload != 3 {
		t.Fatalf("forwarded %+v, want one message with payload 3", got)
	}
	pos, ok := got[0].Origin()
	if !ok || pos != (processor.Position{Partition: tp0, Offset: 7}) {
		t.Fatalf("origin = %v, %v, want t/0 offset 7", pos, ok)
	}
	if !got[0].Timestamp.Equal(in.Timestamp) || !got[0].Committable.Equal(in.Committable) {
		t.Fatalf("forwarded timestamp %v committable %v, want %v %v", got[0].Timestamp, got[0].Committable, in.Timestamp, in.Committable)
	}
}

func TestRunTaskPassesFiltered(t *testing.T) {
	next := &recorder[int]{}
	calls := 0
	s := NewRunTask(func(context.Context, processor.Message[string]) (int, error) { calls++; return 0, nil }, next)

	c := processor.CommittableOf(tp0, 5)
	if err := s.Submit(processor.NewFiltered[string](c, time.Unix(5, 0))); err != nil {
		t.Fatalf("Submit(filtered) = %v, want nil", err)
	}
	if calls != 0 {
		t.Fatalf("fn ran %d times on a filtered message, want 0", calls)
	}
	got := next.messages()
	if len(got) != 1 || !got[0].Filtered() || !got[0].Committable.Equal(c) {
		t.Fatalf("forwarded %+v, want one filtered message carrying %v", got, c)
	}
}

func TestRunTaskFunctionErrors(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name        string
		fnErr       func(processor.Message[string]) error
		wantInvalid bool
	}{
		{"invalid", func(m processor.Message[string]) error { return processor.Invalid(m, boom) }, true},
		{"plain", func(processor.Message[string]) error { return boom }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &recorder[string]{}
			s := NewRunTask(func(_ context.Context, m processor.Message[string]) (string, error) { return "", tt.fnErr(m) }, next)
			err := s.Submit(brokerMsg("x", tp0, 3))
			if !errors.Is(err, boom) {
				t.Fatalf("Submit = %v, want an error wrapping %v", err, boom)
			}
			inv, ok := processor.AsInvalid(err)
			if ok != tt.wantInvalid {
				t.Fatalf("Submit error invalid = %v, want %v", ok, tt.wantInvalid)
			}
			if ok && (inv.Partition != tp0 || inv.Offset != 3) {
				t.Fatalf("invalid message at %v/%d, want t/0 offset 3", inv.Partition, inv.Offset)
			}
			if n := len(next.messages()); n != 0 {
				t.Fatalf("forwarded %d messages after an error, want 0", n)
			}
		})
	}
}

func TestRunTaskBackpressureRunsFunctionOnce(t *testing.T) {
	next := &recorder[int]{}
	calls := 0
	s := NewRunTask(func(_ context.Context, m processor.Message[int]) (int, error) { calls++; return m.Payload * 10, nil }, next)

	next.rejectAll(true)
	if err := s.Submit(brokerMsg(1, tp0, 0)); err != nil {
		t.Fatalf("Submit with next rejecting = %v, want nil (result carried)", err)
	}
	if err := s.Submit(brokerMsg(2, tp0, 1)); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit while carrying = %v, want ErrMessageRejected", err)
	}
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v, want nil", err)
	}
	if n := len(next.messages()); n != 0 {
		t.Fatalf("forwarded %d messages while next rejects, want 0", n)
	}
	next.rejectAll(false)
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v, want nil", err)
	}
	if err := s.Submit(brokerMsg(2, tp0, 1)); err != nil {
		t.Fatalf("Submit after the carried result went = %v, want nil", err)
	}
	if calls != 2 {
		t.Fatalf("fn ran %d times for 2 messages, want 2", calls)
	}
	got := next.messages()
	if len(got) != 2 || got[0].Payload != 10 || got[1].Payload != 20 {
		t.Fatalf("forwarded %+v, want payloads 10, 20", got)
	}
}

func TestRunTaskJoin(t *testing.T) {
	tests := []struct {
		name        string
		ctx         func() context.Context
		rejections  int // how often next rejects the carried result during Join
		wantForward int
	}{
		{"flushes after retries", context.Background, 3, 1},
		{"done ctx abandons", doneCtx, 1 << 30, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &recorder[int]{}
			m := newCountMetrics()
			s := NewRunTask(func(_ context.Context, m processor.Message[int]) (int, error) { return m.Payload, nil }, next, WithMetrics(m))
			rejectTimes(next, 1+tt.rejections)
			if err := s.Submit(brokerMsg(1, tp0, 0)); err != nil {
				t.Fatalf("Submit = %v, want nil", err)
			}
			s.Close()
			if err := s.Join(tt.ctx()); err != nil {
				t.Fatalf("Join = %v, want nil", err)
			}
			if n := len(next.messages()); n != tt.wantForward {
				t.Fatalf("forwarded %d messages, want %d", n, tt.wantForward)
			}
			if got := m.counter("strategies.run_task.join.backpressure"); got < 1 || (tt.wantForward == 1 && got != int64(tt.rejections)) {
				t.Fatalf("join.backpressure = %d, want %d", got, tt.rejections)
			}
			checkJoined(t, next)
		})
	}
}

func TestRunTaskTerminate(t *testing.T) {
	next := &recorder[int]{}
	s := NewRunTask(func(_ context.Context, m processor.Message[int]) (int, error) { return m.Payload, nil }, next)
	next.rejectAll(true)
	if err := s.Submit(brokerMsg(1, tp0, 0)); err != nil {
		t.Fatalf("Submit = %v, want nil", err)
	}
	s.Terminate()
	next.rejectAll(false)
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll after Terminate = %v, want nil", err)
	}
	if n := len(next.messages()); n != 0 {
		t.Fatalf("forwarded %d messages after Terminate, want 0", n)
	}
	if !next.terminated {
		t.Fatal("next step not terminated")
	}
}

// discard is a terminal step that keeps nothing, so benchmarks measure the step in front.
type discard[T any] struct{}

func (discard[T]) Submit(processor.Message[T]) error { return nil }
func (discard[T]) Poll() error                       { return nil }
func (discard[T]) Close()                            {}
func (discard[T]) Join(context.Context) error        { return nil }
func (discard[T]) Terminate()                        {}

// BenchmarkRunTaskIdentity measures RunTask's own cost per message with a step behind
// it that does nothing.
func BenchmarkRunTaskIdentity(b *testing.B) {
	s := NewRunTask(func(_ context.Context, m processor.Message[processor.KafkaPayload]) (processor.KafkaPayload, error) {
		return m.Payload, nil
	}, processor.Strategy[processor.KafkaPayload](discard[processor.KafkaPayload]{}))
	msg := processor.NewBrokerMessage(processor.KafkaPayload{Value: []byte("v")}, tp0, 0, time.Unix(0, 0))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Submit(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTerminateDropsHeldWork checks, for every step that holds work on backpressure,
// that Terminate drops it and terminates the next step.
func TestTerminateDropsHeldWork(t *testing.T) {
	type step interface {
		Poll() error
		Terminate()
	}
	tests := []struct {
		name string
		// build returns the step, having made it hold work, and the next step.
		build func(t *testing.T) (step, *recorder[string])
	}{
		{"RunTask", func(t *testing.T) (step, *recorder[string]) {
			next := &recorder[string]{}
			next.rejectAll(true)
			s := NewRunTask(func(_ context.Context, m processor.Message[string]) (string, error) { return m.Payload, nil }, next)
			return s, next
		}},
		{"Filter", func(t *testing.T) (step, *recorder[string]) {
			next := &recorder[string]{}
			next.rejectAll(true)
			return NewFilter(func(context.Context, processor.Message[string]) bool { return true }, next), next
		}},
		{"Reduce", func(t *testing.T) (step, *recorder[string]) {
			next := &recorder[string]{}
			next.rejectAll(true)
			s, err := NewReduce(BatchLimits[string]{MaxSize: 1},
				func(_ string, m processor.Message[string]) (string, error) { return m.Payload, nil },
				func() string { return "" }, next)
			if err != nil {
				t.Fatalf("NewReduce = %v", err)
			}
			return s, next
		}},
		{"Unfold", func(t *testing.T) (step, *recorder[string]) {
			next := &recorder[string]{}
			next.rejectAll(true)
			return NewUnfold(splitWords, next), next
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, next := tt.build(t)
			if err := s.(processor.Strategy[string]).Submit(brokerMsg("a b", tp0, 0)); err != nil {
				t.Fatalf("Submit = %v, want nil (work held)", err)
			}
			s.Terminate()
			next.rejectAll(false)
			if err := s.Poll(); err != nil {
				t.Fatalf("Poll after Terminate = %v", err)
			}
			if n := len(next.messages()); n != 0 {
				t.Fatalf("forwarded %d messages after Terminate, want 0", n)
			}
			if !next.terminated {
				t.Fatal("next step not terminated")
			}
		})
	}
}
