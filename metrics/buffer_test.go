package metrics_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newTestBuffer returns a metrics.Buffer that flushes only when told to, closed at the end
// of the test.
func newTestBuffer(t *testing.T, backend metrics.Metrics) *metrics.Buffer {
	t.Helper()
	b, err := metrics.NewBuffer(backend, metrics.BufferConfig{FlushInterval: time.Hour})
	if err != nil {
		t.Fatalf("NewBuffer: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// waitClosed fails the test if ch is not closed within a few seconds.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out after 5s waiting for %s", what)
	}
}

func TestBufferConcurrentWritesAndFlushesSumExactly(t *testing.T) {
	const writers, perWriter = 10, 100
	tags := []metrics.Tag{{Key: "phase", Value: "poll"}, {Key: "shard", Value: "1"}}
	reversed := []metrics.Tag{tags[1], tags[0]}
	tests := []struct {
		name  string
		write func(b *metrics.Buffer, i int)
		total func(r *metricstest.Recorder) int64
	}{
		{
			name: "counter",
			write: func(b *metrics.Buffer, i int) {
				// Half the writers list the tags the other way round: one series.
				if i%2 == 0 {
					b.Increment("consumer.run.count", 1, tags...)
				} else {
					b.Increment("consumer.run.count", 1, reversed...)
				}
			},
			total: func(r *metricstest.Recorder) int64 { return r.Counter("consumer.run.count", tags...) },
		},
		{
			name: "timing",
			write: func(b *metrics.Buffer, i int) {
				if i%2 == 0 {
					b.Timing("consumer.poll.time", time.Millisecond, tags...)
				} else {
					b.Timing("consumer.poll.time", time.Millisecond, reversed...)
				}
			},
			total: func(r *metricstest.Recorder) int64 {
				var sum time.Duration
				for _, d := range r.Timings("consumer.poll.time", tags...) {
					sum += d
				}
				return int64(sum / time.Millisecond)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := metricstest.NewRecorder()
			b := newTestBuffer(t, rec)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range writers {
				wg.Go(func() {
					<-start
					for range perWriter {
						tt.write(b, i)
					}
				})
			}
			writersDone := make(chan struct{})
			go func() { wg.Wait(); close(writersDone) }()
			close(start)
			flushes := 0
			for done := false; !done; flushes++ {
				select {
				case <-writersDone:
					done = true
				default:
				}
				b.Flush()
			}
			b.Flush()
			if got := tt.total(rec); got != writers*perWriter {
				t.Fatalf("after %d flushes racing with writers the backend got %d, want %d", flushes, got, writers*perWriter)
			}
		})
	}
}

func TestBufferFlushEmptiesIt(t *testing.T) {
	rec := metricstest.NewRecorder()
	b := newTestBuffer(t, rec)
	b.Increment("c", 2)
	b.Timing("t", time.Second)
	b.Gauge("g", 1.5)
	b.Flush()
	b.Flush()
	if got := rec.Counter("c"); got != 2 {
		t.Errorf("counter c = %d after two flushes, want 2", got)
	}
	if got := rec.Timings("t"); len(got) != 1 || got[0] != time.Second {
		t.Errorf("timings t = %v after two flushes, want [1s]", got)
	}
	b.Gauge("g", 2.5)
	b.Flush()
	if got, _ := rec.GaugeValue("g"); got != 2.5 {
		t.Errorf("gauge g = %v, want 2.5", got)
	}
}

func TestBufferGaugeKeepsLastValue(t *testing.T) {
	var calls atomic.Int64
	rec := metricstest.NewRecorder()
	b := newTestBuffer(t, countingBackend{rec, &calls})
	for _, v := range []float64{3, 1, 2} {
		b.Gauge("consumer.dlq_buffer.len", v, metrics.Tag{Key: "partition", Value: "0"})
	}
	b.Flush()
	if got, ok := rec.GaugeValue("consumer.dlq_buffer.len", metrics.Tag{Key: "partition", Value: "0"}); !ok || got != 2 {
		t.Errorf("gauge = %v (set %v), want 2", got, ok)
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("backend called %d times for one gauge, want 1", got)
	}
}

func TestBufferFlushRacingCloseLosesNothing(t *testing.T) {
	for range 50 {
		rec := metricstest.NewRecorder()
		b, err := metrics.NewBuffer(rec, metrics.BufferConfig{FlushInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 250 {
					b.Increment("n", 1)
				}
			})
		}
		wg.Wait()
		var closers sync.WaitGroup
		closers.Go(b.Flush)
		closers.Go(b.Close)
		closers.Go(b.Close)
		closers.Wait()
		if got := rec.Counter("n"); got != 1000 {
			t.Fatalf("after Flush racing Close the backend got %d, want 1000", got)
		}
	}
}

func TestBufferBlockedBackendDoesNotBlockWriters(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	rec := metricstest.NewRecorder()
	b := newTestBuffer(t, &blockingBackend{Recorder: rec, entered: entered, release: release})
	b.Increment("n", 1)
	flushed := make(chan struct{})
	go func() { b.Flush(); close(flushed) }()
	waitClosed(t, entered, "the flush to reach the backend")

	written := make(chan struct{})
	go func() {
		for range 1000 {
			b.Increment("n", 1)
			b.Increment("fresh", 1, metrics.Tag{Key: "k", Value: "v"})
			b.Gauge("g", 1)
			b.Timing("t", time.Millisecond)
		}
		close(written)
	}()
	waitClosed(t, written, "writers while the backend is blocked")
	close(release)
	waitClosed(t, flushed, "the blocked flush to finish")
	b.Flush()
	if got := rec.Counter("n"); got != 1001 {
		t.Errorf("counter n = %d, want 1001", got)
	}
	if got := rec.Counter("fresh", metrics.Tag{Key: "k", Value: "v"}); got != 1000 {
		t.Errorf("counter fresh = %d, want 1000", got)
	}
}

func TestBufferFlushesOnItsOwn(t *testing.T) {
	rec := metricstest.NewRecorder()
	b, err := metrics.NewBuffer(rec, metrics.BufferConfig{FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Increment("n", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rec.WaitCounter(ctx, "n", 3); err != nil {
		t.Fatal(err)
	}
}

func TestBufferCloseFlushesAndIsIdempotent(t *testing.T) {
	rec := metricstest.NewRecorder()
	b, err := metrics.NewBuffer(rec, metrics.BufferConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b.Increment("n", 1)
	b.Close()
	b.Close()
	if got := rec.Counter("n"); got != 1 {
		t.Errorf("counter n = %d after Close, want 1", got)
	}
}

func TestNewBufferRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name    string
		backend metrics.Metrics
		cfg     metrics.BufferConfig
		want    string
	}{
		{"nil backend", nil, metrics.BufferConfig{}, "needs a backend"},
		{"negative interval", metrics.Noop{}, metrics.BufferConfig{FlushInterval: -time.Second}, "FlushInterval is -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := metrics.NewBuffer(tt.backend, tt.cfg)
			if err == nil {
				b.Close()
				t.Fatal("NewBuffer accepted a bad configuration")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestBufferWritesOfSeenSeriesDoNotAllocate(t *testing.T) {
	b := newTestBuffer(t, metrics.Noop{})
	tags := []metrics.Tag{{Key: "phase", Value: "poll"}, {Key: "partition", Value: "3"}}
	write := func() {
		b.Increment("consumer.run.count", 1, tags...)
		b.Timing("consumer.poll.time", time.Millisecond, tags...)
		b.Gauge("consumer.dlq_buffer.len", 1, tags...)
	}
	write()
	if n := testing.AllocsPerRun(1000, write); n != 0 {
		t.Errorf("writes of seen series allocate %v times per run, want 0", n)
	}
}

type countingBackend struct {
	metrics.Metrics
	calls *atomic.Int64
}

func (c countingBackend) Gauge(name string, v float64, tags ...metrics.Tag) {
	c.calls.Add(1)
	c.Metrics.Gauge(name, v, tags...)
}

// blockingBackend blocks its first Increment until release is closed.
type blockingBackend struct {
	*metricstest.Recorder
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (b *blockingBackend) Increment(name string, v int64, tags ...metrics.Tag) {
	b.once.Do(func() {
		close(b.entered)
		<-b.release
	})
	b.Recorder.Increment(name, v, tags...)
}

// TestBufferHandlesShareTheSeries checks that a Counter or Timer adds to the same
// series as Increment and Timing with that name and tag set, in any tag order, from
// many goroutines, and that the zero handles discard.
func TestBufferHandlesShareTheSeries(t *testing.T) {
	rec := metricstest.NewRecorder()
	b := newTestBuffer(t, rec)
	ok := metrics.Tag{Key: "status", Value: "ok"}
	shard := metrics.Tag{Key: "shard", Value: "1"}
	c := b.Counter("consumer.commit_status", ok, shard)
	tm := b.Timer("consumer.poll.time")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c.Add(2)
				tm.Add(time.Millisecond)
				b.Increment("consumer.commit_status", 1, shard, ok)
			}
		})
	}
	wg.Wait()
	metrics.Counter{}.Add(1)
	metrics.Timer{}.Add(time.Second)
	b.Flush()
	if got := rec.Counter("consumer.commit_status", ok, shard); got != 8*1000*3 {
		t.Errorf("counter = %d, want %d", got, 8*1000*3)
	}
	if got := rec.Timings("consumer.poll.time"); len(got) != 1 || got[0] != 8*1000*time.Millisecond {
		t.Errorf("timings = %v, want one of %v", got, 8*1000*time.Millisecond)
	}
}

func TestBufferHandlesDoNotAllocate(t *testing.T) {
	b := newTestBuffer(t, metrics.Noop{})
	c, tm := b.Counter("c"), b.Timer("t")
	if n := testing.AllocsPerRun(1000, func() { c.Add(1); tm.Add(time.Millisecond) }); n != 0 {
		t.Errorf("handle writes allocate %v times per run, want 0", n)
	}
}
