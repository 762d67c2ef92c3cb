package processor

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics/metricstest"
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
			h = newHarness(t, Config[string]{
				CommitPolicy:           ImmediateCommit(),
				BackpressurePauseAfter: pauseAfter,
				Metrics:                rec,
			}, func(s *fakeStrategy) {
				s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
					if !open.Load() {
						if len(h.consumer.Paused()) == 0 {
							attemptsUnpaused.Add(1)
						}
						return ErrMessageRejected
					}
					s.accept(m)
					return s.commit(m.Committable, false)
				}
			})
			h.consumer.ignorePause = tc.ignorePause
			h.consumer.produce(p0, 0, 5)
			h.start()
			h.consumer.assign(p0)
			h.waitUntil("the partition paused", func() bool { return h.ev.has("pause [t/0]") })
			s := h.factory.strategy(t, 0)
			if got := s.payloads(); len(got) != 0 {
				t.Fatalf("accepted %v while rejecting", got)
			}
			// Offers before the pause are spaced by the retry timer, not a busy loop.
			if n, max := attemptsUnpaused.Load(), int64(pauseAfter/retryInterval)+2; n > max {
				t.Errorf("%d offers in the %v before the pause; a timer-paced retry makes at most %d", n, pauseAfter, max)
			}
			open.Store(true)
			h.waitUntil("offset 5 committed", func() bool { return h.consumer.committedOffset(p0) == 5 })
			h.ev.index(t, "resume [t/0]")
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			var want []string
			for o := range 5 {
				want = append(want, fmt.Sprintf("t/0@%d", o))
			}
			if got := s.payloads(); !slices.Equal(got, want) {
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
	h := newHarness(t, Config[string]{CommitPolicy: ImmediateCommit(), BackpressurePauseAfter: time.Millisecond}, func(s *fakeStrategy) {
		s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
			if !open.Load() {
				return ErrMessageRejected
			}
			if pos, _ := m.Origin(); pos.Offset == 0 {
				return Invalid(m, fmt.Errorf("bad"))
			}
			s.accept(m)
			return s.commit(m.Committable, false)
		}
	})
	h.consumer.produce(p0, 0, 3)
	h.start()
	h.consumer.assign(p0)
	h.waitUntil("the partition paused", func() bool { return h.ev.has("pause [t/0]") })
	open.Store(true)
	h.waitUntil("offset 3 committed", func() bool { return h.consumer.committedOffset(p0) == 3 })
	h.ev.index(t, "resume [t/0]")
	if got := h.factory.strategy(t, 0).payloads(); !slices.Equal(got, []string{"t/0@1", "t/0@2"}) {
		t.Fatalf("accepted %v, want the two valid messages", got)
	}
}
