package processor_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
)

func TestBackpressureCarriesPausesAndResumes(t *testing.T) {
	const pauseAfter = 50 * time.Millisecond
	cases := []struct {
		name string
		// ignorePause makes the consumer hand out messages after Pause, as one that
		// had fetched ahead does; the processor holds them behind the carried one.
		ignorePause bool
	}{
		{"consumer honours pause", false},
		{"consumer delivers after pause", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var open atomic.Bool
			var attemptsUnpaused atomic.Int64
			rec := metricstest.NewRecorder()
			var h *harness
			h = newHarness(t, processor.Config[string]{
				CommitPolicy:           processor.ImmediateCommit(),
				BackpressurePauseAfter: pauseAfter,
				Metrics:                rec,
			}, func(s *processortest.Strategy[string]) {
				s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
					if !open.Load() {
						if len(h.Consumer.Paused()) == 0 {
							attemptsUnpaused.Add(1)
						}
						return processor.ErrMessageRejected
					}
					s.Accept(m)
					return s.Commit(m.Committable, false)
				}
			})
			h.Consumer.SetIgnorePause(tc.ignorePause)
			h.produce(p0, 0, 5)
			h.Start()
			h.Consumer.Assign(p0)
			h.WaitUntil("the partition paused", func() bool { return h.Events.Has("pause [t/0]") })
			s := h.factory.Strategy(t, 0)
			if got := s.Payloads(); len(got) != 0 {
				t.Fatalf("accepted %v while rejecting", got)
			}
			// Offers before the pause are spaced by the retry timer, not a busy loop.
			if n, max := attemptsUnpaused.Load(), int64(pauseAfter/processor.RetryInterval)+2; n > max {
				t.Errorf("%d offers in the %v before the pause; a timer-paced retry makes at most %d", n, pauseAfter, max)
			}
			open.Store(true)
			h.WaitUntil("offset 5 committed", func() bool { return h.Consumer.Committed(p0) == 5 })
			h.Events.Index(t, "resume [t/0]")
			if err := h.Stop(); err != nil {
				t.Fatal(err)
			}
			var want []string
			for o := range 5 {
				want = append(want, fmt.Sprintf("t/0@%d", o))
			}
			if got := s.Payloads(); !slices.Equal(got, want) {
				t.Fatalf("accepted %v, want each message once in order: %v", got, want)
			}
			if rec.Counter("consumer.pause") != 1 || rec.Counter("consumer.resume") != 1 {
				t.Errorf("pause/resume counted %d/%d, want 1/1", rec.Counter("consumer.pause"), rec.Counter("consumer.resume"))
			}
			if len(rec.Timings("consumer.backpressure.time")) == 0 {
				t.Error("no consumer.backpressure.time recorded")
			}
		})
	}
}

func TestInvalidSubmitWhilePausedResumes(t *testing.T) {
	var open atomic.Bool
	h := newHarness(t, processor.Config[string]{CommitPolicy: processor.ImmediateCommit(), BackpressurePauseAfter: time.Millisecond}, func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			if !open.Load() {
				return processor.ErrMessageRejected
			}
			if pos, _ := m.Origin(); pos.Offset == 0 {
				return processor.Invalid(m, fmt.Errorf("bad"))
			}
			s.Accept(m)
			return s.Commit(m.Committable, false)
		}
	})
	h.produce(p0, 0, 3)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("the partition paused", func() bool { return h.Events.Has("pause [t/0]") })
	open.Store(true)
	h.WaitUntil("offset 3 committed", func() bool { return h.Consumer.Committed(p0) == 3 })
	h.Events.Index(t, "resume [t/0]")
	if got := h.factory.Strategy(t, 0).Payloads(); !slices.Equal(got, []string{"t/0@1", "t/0@2"}) {
		t.Fatalf("accepted %v, want the two valid messages", got)
	}
}
