package processor

import (
	"context"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestWatchdogReportsAStrategyBlockedInSubmit(t *testing.T) {
	rec := metrics.NewRecorder()
	core, logs := observer.New(zap.WarnLevel)
	unblock := make(chan struct{})
	h := newHarness(t, Config[string]{
		Metrics: rec,
		Logger:  zap.New(core),
		Stuck:   StuckConfig{Timeout: 50 * time.Millisecond},
	}, func(s *fakeStrategy) {
		s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
			<-unblock
			s.accept(m)
			return nil
		}
	})
	h.consumer.produce(p0, 0, 1)
	h.start()
	h.consumer.assign(p0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	submit := metrics.Tag{Key: "phase", Value: phaseSubmit}
	if err := rec.Wait(ctx, func() bool { return rec.Counter("creek.consumer.stuck", submit) >= 1 }); err != nil {
		t.Fatalf("waiting for creek.consumer.stuck{phase:submit}: %v", err)
	}
	close(unblock)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	stuck := logs.FilterMessage("loop is stuck").All()
	if len(stuck) == 0 || stuck[0].ContextMap()["phase"] != phaseSubmit {
		t.Fatalf("stuck reports %v, want one naming phase %q", stuck, phaseSubmit)
	}
}

func TestExitOnStuckExitsAfterTheHardLimit(t *testing.T) {
	exited := make(chan int, 1)
	unblock := make(chan struct{})
	h := newHarness(t, Config[string]{
		Stuck: StuckConfig{Timeout: 20 * time.Millisecond, HardLimit: 40 * time.Millisecond, ExitOnStuck: true},
	}, func(s *fakeStrategy) {
		s.onSubmit = func(s *fakeStrategy, m Message[string]) error {
			<-unblock
			return nil
		}
	})
	h.proc.cfg.exit = func(code int) { exited <- code }
	h.consumer.produce(p0, 0, 1)
	h.start()
	h.consumer.assign(p0)
	select {
	case code := <-exited:
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out after 10s waiting for the hard limit to exit")
	}
	close(unblock)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
}
