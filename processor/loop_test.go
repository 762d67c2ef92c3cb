package processor_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestWatchdogReportsAStrategyBlockedInSubmit(t *testing.T) {
	rec := metricstest.NewRecorder()
	core, logs := observer.New(zap.WarnLevel)
	unblock := make(chan struct{})
	h := newHarness(t, processor.Config[string]{
		Metrics: rec,
		Logger:  zap.New(core),
		Stuck:   processor.StuckConfig{Timeout: 50 * time.Millisecond},
	}, func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			<-unblock
			s.Accept(m)
			return nil
		}
	})
	h.produce(p0, 0, 1)
	h.Start()
	h.Consumer.Assign(p0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	submit := metrics.Tag{Key: "phase", Value: processor.PhaseSubmit}
	if err := rec.Wait(ctx, func() bool { return rec.Counter("consumer.stuck", submit) >= 1 }); err != nil {
		t.Fatalf("waiting for consumer.stuck{phase:submit}: %v", err)
	}
	close(unblock)
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	stuck := logs.FilterMessage("loop is stuck").All()
	if len(stuck) == 0 || stuck[0].ContextMap()["phase"] != processor.PhaseSubmit {
		t.Fatalf("stuck reports %v, want one naming phase %q", stuck, processor.PhaseSubmit)
	}
}

func TestExitOnStuckExitsAfterTheHardLimit(t *testing.T) {
	exited := make(chan int, 1)
	unblock := make(chan struct{})
	h := newHarness(t, processor.Config[string]{
		Stuck: processor.StuckConfig{Timeout: 20 * time.Millisecond, HardLimit: 40 * time.Millisecond, ExitOnStuck: true},
	}, func(s *processortest.Strategy[string]) {
		s.OnSubmit = func(s *processortest.Strategy[string], m processor.Message[string]) error {
			<-unblock
			return nil
		}
	})
	processor.SetExit(h.Processor, func(code int) { exited <- code })
	h.produce(p0, 0, 1)
	h.Start()
	h.Consumer.Assign(p0)
	select {
	case code := <-exited:
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timed out after 10s waiting for the hard limit to exit")
	}
	close(unblock)
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
}

// benchConsumer hands out an endless stream of messages of one partition, as fast as
// it is asked, so that a benchmark measures the loop and not a broker.
type benchConsumer struct {
	cb       processor.RebalanceCallbacks
	next     int64
	assigned bool
}

func (c *benchConsumer) Subscribe(_ []string, cb processor.RebalanceCallbacks) error {
	c.cb = cb
	return nil
}
func (c *benchConsumer) Poll(context.Context, time.Duration) (processor.Message[string], bool, error) {
	if !c.assigned {
		c.assigned = true
		c.cb.OnAssign([]processor.Partition{p0})
		return processor.Message[string]{}, false, nil
	}
	m := processor.NewBrokerMessage("payload of a typical small message", p0, c.next, time.Time{})
	c.next++
	return m, true, nil
}

// Buffered says that Poll never waits, as kafka.Consumer says while it holds a batch.
func (c *benchConsumer) Buffered() int                                               { return 1 }
func (c *benchConsumer) Pause([]processor.Partition)                                 {}
func (c *benchConsumer) Resume([]processor.Partition)                                {}
func (c *benchConsumer) Paused() []processor.Partition                               { return nil }
func (c *benchConsumer) Assignment() []processor.Partition                           { return []processor.Partition{p0} }
func (c *benchConsumer) Commit(context.Context, map[processor.Partition]int64) error { return nil }
func (c *benchConsumer) Close() error                                                { return nil }

// countingStrategy stages every message's offsets, as CommitOffsets does, and
// cancels the run after n messages.
type countingStrategy struct {
	commit processor.CommitFunc
	n      int
	cancel context.CancelFunc
}

func (s *countingStrategy) Submit(m processor.Message[string]) error {
	if s.n--; s.n == 0 {
		s.cancel()
	}
	return s.commit(m.Committable, false)
}
func (s *countingStrategy) Poll() error { return nil }
func (s *countingStrategy) Close()      {}
func (s *countingStrategy) Join(context.Context) error {
	return s.commit(processor.Committable{}, true)
}
func (s *countingStrategy) Terminate() {}

// BenchmarkLoop measures the processor's own cost per message: poll, strategy
// poll, submit, staging and the once-a-second commit, with and without the DLQ
// buffer that keeps every raw message until it is committed.
func BenchmarkLoop(b *testing.B) {
	for _, withDLQ := range []bool{false, true} {
		b.Run(fmt.Sprintf("dlq=%v", withDLQ), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			factory := processor.FactoryFunc[string](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[string], error) {
				return &countingStrategy{commit: commit, n: b.N, cancel: cancel}, nil
			})
			cfg := processor.Config[string]{Topics: []string{"t"}}
			if withDLQ {
				cfg.DLQ = &processor.DLQPolicy[string]{Producer: nopDLQ[string]{}, Size: sizeOf}
			}
			p, err := processor.New[string](&benchConsumer{}, factory, cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu := startCPU(b)
			if err := p.Run(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu.report()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// commitCountingConsumer is a benchConsumer that notes how many messages it had
// handed out at the first commit.
type commitCountingConsumer struct {
	benchConsumer
	firstCommitAt int64
}

func (c *commitCountingConsumer) Commit(context.Context, map[processor.Partition]int64) error {
	if c.firstCommitAt == 0 {
		c.firstCommitAt = c.next
	}
	return nil
}

// slowStrategy is a countingStrategy whose every message takes delay.
type slowStrategy struct {
	countingStrategy
	delay time.Duration
}

func (s *slowStrategy) Submit(m processor.Message[string]) error {
	time.Sleep(s.delay) // the work of a message, not a synchronisation
	return s.countingStrategy.Submit(m)
}

// The loop reads the clock only every processor.ClockStride iterations of a consumer with
// buffered messages, and when clockPeriod has passed: with slow messages a
// time-based commit must come after its interval, not after processor.ClockStride messages.
func TestIntervalCommitDoesNotWaitForTheClockStride(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &commitCountingConsumer{}
	factory := processor.FactoryFunc[string](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[string], error) {
		return &slowStrategy{countingStrategy{commit: commit, n: processor.ClockStride, cancel: cancel}, time.Millisecond}, nil
	})
	p, err := processor.New[string](c, factory, processor.Config[string]{
		Topics:       []string{"t"},
		CommitPolicy: processor.CommitPolicy{MinInterval: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// 1 ms a message: the interval passes after about 20 messages, the ticker
	// notices within clockPeriod (10 more).
	if c.firstCommitAt == 0 || c.firstCommitAt >= processor.ClockStride/2 {
		t.Errorf("first commit after %d messages of 1 ms with a 20 ms interval, want it well before the %d-message clock stride", c.firstCommitAt, processor.ClockStride)
	}
}

// blockingStrategy blocks in Poll or Submit, as block says, once the first
// message has been taken, until release is closed.
type blockingStrategy struct {
	inSubmit bool
	release  chan struct{}
	took     bool
}

func (s *blockingStrategy) Submit(processor.Message[string]) error {
	if s.took && s.inSubmit {
		<-s.release
	}
	s.took = true
	return nil
}

func (s *blockingStrategy) Poll() error {
	if s.took && !s.inSubmit {
		<-s.release
	}
	return nil
}
func (s *blockingStrategy) Close()                     {}
func (s *blockingStrategy) Join(context.Context) error { return nil }
func (s *blockingStrategy) Terminate()                 {}

// A consumer with messages at hand polls without a phase of its own: the phases
// of a stall in the strategy must still be right.
func TestWatchdogNamesTheStrategyPhaseWithABufferedConsumer(t *testing.T) {
	for _, tt := range []struct {
		inSubmit bool
		want     string
	}{{false, processor.PhaseStrategyPoll}, {true, processor.PhaseSubmit}} {
		t.Run(tt.want, func(t *testing.T) {
			core, logs := observer.New(zap.WarnLevel)
			warned := make(chan struct{}, 1)
			logger := zap.New(zapcore.RegisterHooks(core, func(zapcore.Entry) error {
				select {
				case warned <- struct{}{}:
				default:
				}
				return nil
			}))
			s := &blockingStrategy{inSubmit: tt.inSubmit, release: make(chan struct{})}
			factory := processor.FactoryFunc[string](func(processor.CommitFunc, []processor.Partition) (processor.Strategy[string], error) { return s, nil })
			p, err := processor.New[string](&benchConsumer{}, factory, processor.Config[string]{
				Topics: []string{"t"},
				Logger: logger,
				Stuck:  processor.StuckConfig{Timeout: 20 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ended := make(chan error, 1)
			go func() { ended <- p.Run(ctx) }()
			select {
			case <-warned:
				stuck := logs.FilterMessage("loop is stuck").All()
				if len(stuck) == 0 || stuck[0].ContextMap()["phase"] != tt.want {
					t.Errorf("stuck reports %v, want one naming phase %q", stuck, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("timed out after 10s waiting for a stuck report naming phase %q", tt.want)
			}
			cancel()
			close(s.release)
			if err := <-ended; err != nil {
				t.Fatal(err)
			}
		})
	}
}
