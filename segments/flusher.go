package segments

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/internal/defaults"
	"github.com/creekstream/creek/internal/stacks"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
	"github.com/creekstream/creek/stuckdetector"
)

// Producer writes flushed segments to Kafka. kafka.Producer satisfies it.
type Producer interface {
	Produce(ctx context.Context, topic string, payload processor.KafkaPayload) *processor.Delivery
}

// Errors the span flusher reports, wrapped in a *WorkerError that names the worker.
var (
	// ErrWorkerExited: a worker returned or panicked during start-up.
	ErrWorkerExited = errors.New("segments: flusher worker exited")
	// ErrStartupTimeout: a worker did not report healthy within StartupTimeout.
	ErrStartupTimeout = errors.New("segments: flusher worker did not report healthy in time")
	// ErrRestartLimit: a worker needed more than MaxRestarts restarts.
	ErrRestartLimit = errors.New("segments: flusher worker exceeded its restart limit")
	// ErrWorkerNotStopped: a worker kept running after it was told to stop. It could
	// flush its shards a second time alongside its successor, so the flusher fails.
	ErrWorkerNotStopped = errors.New("segments: flusher worker did not stop")
)

// WorkerError is a failure of one flusher worker.
type WorkerError struct {
	Worker int
	Shards []int32
	Err    error
}

func (e *WorkerError) Error() string {
	return fmt.Sprintf("segments: flusher worker %d (shards %v): %v", e.Worker, e.Shards, e.Err)
}

func (e *WorkerError) Unwrap() error { return e.Err }

// FlusherConfig configures the flusher strategy, which emits finished segments. Topic and Producer are required; a zero field
// takes the default named on it.
type FlusherConfig struct {
	// Topic is where flushed segments are produced.
	Topic string
	// Producer writes the segments; kafka.Producer is one.
	Producer Producer
	// Workers is the number of flusher goroutines. Default and upper bound: the
	// number of assigned shards, which are dealt round robin over the workers.
	Workers int
	// MaxUnhealthy is how long a worker may go without completing a flush cycle
	// before it is replaced (default 60 s).
	MaxUnhealthy time.Duration
	// StartupTimeout is how long a new worker has to report healthy for the first
	// time: Start fails after it, and a replacement is not judged before it
	// (default 2 x MaxUnhealthy).
	StartupTimeout time.Duration
	// MaxRestarts is how often one worker may be replaced; one more need fails the
	// flusher and so stops the consumer (default 10).
	MaxRestarts int
	// BackpressureAfter is how long a worker may keep hitting its per-cycle segment
	// limit (the buffer's MaxFlushSegments) before Submit rejects (default 10 s).
	BackpressureAfter time.Duration
	// MaxFlushLag is how far past its deadline, on its partition's clock, the
	// oldest due segment of a worker's shards may be when the worker reads its
	// queues: beyond it Submit rejects until the flush has caught up, so that
	// ingest goes no faster than the flush and segments come out close to their
	// deadline (default DefaultMaxFlushLag, or twice IdleInterval if that is more;
	// negative turns it off). It must exceed IdleInterval, which idle workers wait
	// between reads.
	MaxFlushLag time.Duration
	// MaxMemoryRatio is Redis's used/available memory above which Submit rejects
	// (default 1.0, off).
	MaxMemoryRatio float64
	// IdleInterval is how long a worker sleeps after a cycle that left nothing due
	// (default 1 s).
	IdleInterval time.Duration
	// RedisTimeout bounds each Redis call of a cycle (default 10 s).
	RedisTimeout time.Duration
	// ProduceTimeout bounds producing one cycle's segments and waiting for their
	// acknowledgements; segments not acknowledged in time stay in Redis and the
	// cycle does not count as healthy (default 10 s).
	ProduceTimeout time.Duration
	// StopTimeout is how long a stopped worker gets to exit before the wait is
	// escalated (a warning with every goroutine's stack), and again before the
	// flusher gives up on it with ErrWorkerNotStopped (default 10 s).
	StopTimeout time.Duration
	// CheckInterval is how often workers' health and Redis's memory are checked
	// (default 1 s).
	CheckInterval time.Duration
	// MaxUncommittedSpans bounds, when offsets are committed behind the flush
	// (CommitAfterFlush), the spans whose offsets wait for their segments to be
	// flushed: above it Submit rejects, so the consumer pauses until flushes catch
	// up (default DefaultMaxUncommittedSpans). Up to IngestConcurrency batches
	// already on their way to Redis come on top.
	MaxUncommittedSpans int
	// OmitTraceParent leaves out the traceparent header (HeaderTraceParent) that
	// every message of a segment otherwise carries: the W3C trace context of the
	// segment's root span, so that downstream work on the segment continues its
	// trace. A segment without its root span never carries one (see
	// store.FlushedSegment.TraceParent).
	OmitTraceParent bool
	// Logger receives the flusher's logs. Default zap.NewNop().
	Logger *zap.Logger
	// Metrics receives the flusher's metrics, named spans.buffer.flusher.*. Default
	// metrics.Noop{}.
	Metrics metrics.Metrics
}

// HeaderTraceParent is the header of a segment message that holds the W3C trace
// context of the segment's root span, as "00-<trace id>-<span id>-01".
const HeaderTraceParent = "traceparent"

// Defaults of FlusherConfig.
const (
	DefaultMaxUnhealthy      = 60 * time.Second
	DefaultMaxRestarts       = 10
	DefaultBackpressureAfter = 10 * time.Second
	DefaultMaxFlushLag       = 5 * time.Second
	DefaultIdleInterval      = time.Second
	DefaultRedisTimeout      = 10 * time.Second
	DefaultProduceTimeout    = 10 * time.Second
	DefaultStopTimeout       = 10 * time.Second
	DefaultCheckInterval     = time.Second
)

func (c FlusherConfig) withDefaults() (FlusherConfig, error) {
	if c.Topic == "" {
		return c, errors.New("segments: FlusherConfig.Topic is empty; name the topic segments are produced to")
	}
	if c.Producer == nil {
		return c, errors.New("segments: FlusherConfig.Producer is nil; set it (kafka.NewProducer for Kafka)")
	}
	if err := defaults.Durations(
		defaults.Duration{Name: "segments: FlusherConfig.MaxUnhealthy", Value: &c.MaxUnhealthy, Default: DefaultMaxUnhealthy},
		defaults.Duration{Name: "segments: FlusherConfig.StartupTimeout", Value: &c.StartupTimeout},
		defaults.Duration{Name: "segments: FlusherConfig.BackpressureAfter", Value: &c.BackpressureAfter, Default: DefaultBackpressureAfter},
		defaults.Duration{Name: "segments: FlusherConfig.IdleInterval", Value: &c.IdleInterval, Default: DefaultIdleInterval},
		defaults.Duration{Name: "segments: FlusherConfig.RedisTimeout", Value: &c.RedisTimeout, Default: DefaultRedisTimeout},
		defaults.Duration{Name: "segments: FlusherConfig.ProduceTimeout", Value: &c.ProduceTimeout, Default: DefaultProduceTimeout},
		defaults.Duration{Name: "segments: FlusherConfig.StopTimeout", Value: &c.StopTimeout, Default: DefaultStopTimeout},
		defaults.Duration{Name: "segments: FlusherConfig.CheckInterval", Value: &c.CheckInterval, Default: DefaultCheckInterval},
	); err != nil {
		return c, err
	}
	if c.StartupTimeout == 0 {
		c.StartupTimeout = 2 * c.MaxUnhealthy
	}
	if c.MaxFlushLag == 0 {
		c.MaxFlushLag = max(DefaultMaxFlushLag, 2*c.IdleInterval)
	}
	if c.MaxFlushLag > 0 && c.MaxFlushLag <= c.IdleInterval {
		return c, fmt.Errorf("segments: FlusherConfig.MaxFlushLag (%v) must exceed IdleInterval (%v): an idle worker reads its queues only every IdleInterval, so segments routinely wait that long past their deadline; raise it, or set it negative to turn it off", c.MaxFlushLag, c.IdleInterval)
	}
	switch {
	case c.Workers < 0:
		return c, fmt.Errorf("segments: FlusherConfig.Workers is %d; set it > 0, or 0 for one per shard", c.Workers)
	case c.MaxRestarts < 0:
		return c, fmt.Errorf("segments: FlusherConfig.MaxRestarts is %d; set it > 0, or 0 for %d", c.MaxRestarts, DefaultMaxRestarts)
	case c.MaxMemoryRatio < 0 || c.MaxMemoryRatio > 1 || math.IsNaN(c.MaxMemoryRatio):
		return c, fmt.Errorf("segments: FlusherConfig.MaxMemoryRatio is %v; set it in (0, 1], or 0 for 1.0 (off)", c.MaxMemoryRatio)
	}
	if c.MaxRestarts == 0 {
		c.MaxRestarts = DefaultMaxRestarts
	}
	switch {
	case c.MaxUncommittedSpans < 0:
		return c, fmt.Errorf("segments: FlusherConfig.MaxUncommittedSpans is %d; set it > 0, or 0 for %d", c.MaxUncommittedSpans, DefaultMaxUncommittedSpans)
	case c.MaxUncommittedSpans == 0:
		c.MaxUncommittedSpans = DefaultMaxUncommittedSpans
	}
	if c.MaxMemoryRatio == 0 {
		c.MaxMemoryRatio = 1
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = metrics.Noop{}
	}
	return c, nil
}

// flusher is the strategy that emits finished segments. It sits between the ingest
// step and CommitOffsets and forwards every message at once: once spans are in Redis
// their offsets may be committed, and Redis holds them until they are flushed.
//
// Its workers, goroutines that each own some shards, loop: flush due segments,
// produce them, wait for the acknowledgements, remove them from Redis, report
// healthy. A supervisor goroutine replaces a worker that died or stopped reporting,
// never letting the old and the new one run at once. Submit rejects (backpressure)
// until every worker has reported once, and while a worker cannot keep up or Redis
// is nearly full.
//
// The strategy methods are called from the processor's loop goroutine; setShards
// and workerStatus may be called from any goroutine. The workers read the clock;
// the loop goroutine moves it (see kafkaClock).
type flusher struct {
	buf   *store.Buffer
	clock *kafkaClock
	next  processor.Strategy[int]
	// tracker, when offsets are committed behind the flush, is told by the workers
	// which payload sets they flushed; nil otherwise.
	tracker *commitTracker
	cfg     FlusherConfig
	log     *zap.Logger
	m       safeMetrics

	// memRatio holds the float64 bits of Redis's last measured memory ratio.
	memRatio atomic.Uint64
	// ready is set once every worker started by start has reported healthy.
	ready atomic.Bool
	// fatal is the error that failed the flusher; Poll returns it.
	fatal atomic.Pointer[error]

	// mu guards everything below. It is never held while waiting.
	mu      sync.Mutex
	workers []*worker // by index; nil while a replacement is pending
	// assign holds the shards dealt to each worker index; assigned counts them all.
	assign   [][]int32
	assigned int
	// restarts counts the replacements of each worker index.
	restarts []int
	// retired are workers that were told to stop but may not have exited yet;
	// Join waits for them too.
	retired []*worker
	// busy holds the shards a worker is flushing right now, so that a shard moved
	// to another worker is not flushed by both at once.
	busy     map[int32]bool
	started  bool
	stopping bool

	superCancel context.CancelFunc
	superDone   chan struct{}
}

// newFlusher returns a flusher over buf that flushes each shard at its time on
// clock and forwards messages to next. cfg has its defaults filled in already
// (FlusherConfig.withDefaults); start starts the workers.
func newFlusher(buf *store.Buffer, clock *kafkaClock, next processor.Strategy[int], tracker *commitTracker, cfg FlusherConfig) *flusher {
	return &flusher{
		buf: buf, clock: clock, next: next, tracker: tracker, cfg: cfg, log: cfg.Logger,
		m:    safeMetrics{m: cfg.Metrics, log: cfg.Logger},
		busy: make(map[int32]bool),
	}
}

// start deals shards to the workers and starts them and their supervisor, without
// waiting: it runs inside the consumer's assignment callback, where a wait of up to
// StartupTimeout would hold the loop and the group's rebalance. Until every worker
// has reported healthy once Submit rejects, so the consumer pauses rather than
// buffers; a worker that exits first or does not report within StartupTimeout fails
// the flusher, naming the worker and its shards (Poll returns the error).
func (f *flusher) start(shards []int32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started {
		return errors.New("segments: flusher started twice")
	}
	f.started = true
	f.setShardsLocked(shards)
	ctx, cancel := context.WithCancel(context.Background())
	f.superCancel, f.superDone = cancel, make(chan struct{})
	go f.supervise(ctx, slices.Clone(f.workers))
	return nil
}

// awaitStartup waits until every one of workers has reported healthy once. A slow
// start is logged with every goroutine's stack after MaxUnhealthy.
func (f *flusher) awaitStartup(ctx context.Context, workers []*worker) error {
	watched := stuckdetector.Watch(ctx, "span flusher start-up", f.cfg.MaxUnhealthy, f.log)
	defer watched()
	ctx, cancel := context.WithTimeout(ctx, f.cfg.StartupTimeout)
	defer cancel()
	for _, w := range workers {
		var err error
		select {
		case <-w.reported:
			continue
		case <-w.done:
			if w.ctx.Err() != nil {
				// Stopped on purpose: its shards were dealt to fewer workers meanwhile.
				continue
			}
			err = fmt.Errorf("%w during start-up: %s", ErrWorkerExited, w.exitCause())
		case <-ctx.Done():
			err = fmt.Errorf("%w: no report within %v: %w", ErrStartupTimeout, f.cfg.StartupTimeout, ctx.Err())
		}
		return &WorkerError{Worker: w.index, Shards: w.shards(), Err: err}
	}
	return nil
}

// setShards deals a new shard set over the workers, starting or stopping workers
// when their number changes, without restarting the others. The factory calls it
// when the assignment changes.
func (f *flusher) setShards(shards []int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping {
		return
	}
	f.setShardsLocked(shards)
	if f.tracker != nil {
		f.tracker.keep(shards)
	}
}

func (f *flusher) setShardsLocked(shards []int32) {
	s := slices.Clone(shards)
	slices.Sort(s)
	s = slices.Compact(s)
	f.assigned = len(s)

	n := len(s)
	if f.cfg.Workers > 0 {
		n = min(n, f.cfg.Workers)
	}
	assign := make([][]int32, n)
	for i, shard := range s {
		assign[i%n] = append(assign[i%n], shard)
	}
	f.assign = assign
	for len(f.workers) > n {
		last := len(f.workers) - 1
		if w := f.workers[last]; w != nil {
			w.cancel()
			f.retired = append(f.retired, w)
		}
		f.workers = f.workers[:last]
		f.restarts = f.restarts[:last]
	}
	for i, w := range f.workers {
		if w != nil {
			w.setShards(assign[i])
		}
	}
	for len(f.workers) < n {
		f.workers = append(f.workers, f.startWorker(len(f.workers), assign[len(f.workers)]))
		f.restarts = append(f.restarts, 0)
	}
	f.log.Info("span flusher shards dealt", zap.Int("workers", n), zap.Any("shards", assign))
}

// Submit forwards msg to the next step, unless the workers have not all reported
// since start, a worker has been at its limit for longer than BackpressureAfter or
// is further behind than MaxFlushLag, Redis's memory is above MaxMemoryRatio, or
// more than MaxUncommittedSpans spans wait for their flush to be committed: then
// it rejects msg.
func (f *flusher) Submit(msg processor.Message[int]) error {
	if !f.ready.Load() {
		// Starting up: no worker flushes yet, so the spans held upstream do not wait
		// for the flusher, and the clocks stay held at them.
		return processor.ErrMessageRejected
	}
	err := f.submit(msg)
	// Spans held upstream while Submit rejects wait for the flusher itself: holding
	// the clocks at their time could keep it from ever flushing enough to accept.
	f.clock.setUncapped(errors.Is(err, processor.ErrMessageRejected))
	return err
}

func (f *flusher) submit(msg processor.Message[int]) error {
	if ratio := math.Float64frombits(f.memRatio.Load()); ratio > f.cfg.MaxMemoryRatio {
		f.m.count("spans.buffer.flusher.hard_backpressure", 1)
		return processor.ErrMessageRejected
	}
	if f.tracker != nil {
		n := f.tracker.pending()
		f.m.gauge("spans.buffer.flusher.uncommitted_spans", float64(n))
		if n > f.cfg.MaxUncommittedSpans {
			f.m.count("spans.buffer.flusher.commit_backpressure", 1)
			return processor.ErrMessageRejected
		}
	}
	now := time.Now()
	f.mu.Lock()
	var atLimit, lagging *worker
	for _, w := range f.workers {
		if w == nil {
			continue
		}
		if w.atLimitFor(now) > f.cfg.BackpressureAfter {
			atLimit = w
			break
		}
		if f.cfg.MaxFlushLag > 0 && w.lagging() > f.cfg.MaxFlushLag && lagging == nil {
			lagging = w
		}
	}
	f.mu.Unlock()
	switch {
	case atLimit != nil:
		f.m.count("spans.buffer.flusher.backpressure", 1, workerTag(atLimit.index))
		f.log.Debug("span flusher backpressure: a worker is at its flush limit",
			zap.Int("worker", atLimit.index), zap.Int32s("shards", atLimit.shards()))
		return processor.ErrMessageRejected
	case lagging != nil:
		f.m.count("spans.buffer.flusher.lag_backpressure", 1, workerTag(lagging.index))
		f.log.Debug("span flusher backpressure: a worker's flush is behind its deadlines",
			zap.Int("worker", lagging.index), zap.Duration("lag", lagging.lagging()), zap.Int32s("shards", lagging.shards()))
		return processor.ErrMessageRejected
	}
	return f.next.Submit(msg)
}

// Poll returns the error that failed the flusher, if any, and polls the next step.
func (f *flusher) Poll() error {
	if err := f.fatal.Load(); err != nil {
		return *err
	}
	return f.next.Poll()
}

// Close does nothing: the workers run until Join or Terminate.
func (f *flusher) Close() {}

// Join stops the workers and waits for them within ctx, and past it for at most
// StopTimeout, since a worker left running would flush its shards a second time
// beside the next flusher; one that still runs then is an error. It then closes and
// joins the next step.
func (f *flusher) Join(ctx context.Context) error {
	err := f.stopAll(ctx)
	f.next.Close()
	return errors.Join(err, f.next.Join(ctx))
}

// Terminate stops the workers, waiting at most StopTimeout for them, and terminates
// the next step.
func (f *flusher) Terminate() {
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.StopTimeout)
	defer cancel()
	if err := f.stopAll(ctx); err != nil {
		f.log.Error("span flusher terminated with workers still running", zap.Error(err))
	}
	f.next.Terminate()
}

// WorkerStatus describes one worker, for health endpoints and tests.
type WorkerStatus struct {
	Worker int
	Shards []int32
	// HealthySince is when the worker last completed a cycle; zero before its first.
	HealthySince time.Time
	Restarts     int
}

// workerStatus returns the status of every running worker, by index.
func (f *flusher) workerStatus() []WorkerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]WorkerStatus, 0, len(f.workers))
	for i, w := range f.workers {
		if w == nil {
			continue
		}
		out = append(out, WorkerStatus{Worker: i, Shards: w.shards(), HealthySince: w.healthySince(), Restarts: f.restarts[i]})
	}
	return out
}

// fail records the first fatal error.
func (f *flusher) fail(err error) {
	f.fatal.CompareAndSwap(nil, &err)
}

// stopAll stops the supervisor and every worker and waits for them within ctx, then
// for at most StopTimeout past it.
func (f *flusher) stopAll(ctx context.Context) error {
	f.mu.Lock()
	f.stopping = true
	superCancel, superDone := f.superCancel, f.superDone
	f.mu.Unlock()
	if superCancel != nil {
		superCancel()
		// The supervisor's own waits end with its context.
		<-superDone
	}

	f.mu.Lock()
	var all []*worker
	for _, w := range f.workers {
		if w != nil {
			all = append(all, w)
		}
	}
	all = append(all, f.retired...)
	f.workers, f.retired = nil, nil
	f.mu.Unlock()

	for _, w := range all {
		w.cancel()
	}
	var stuck []error
	for _, w := range all {
		if err := f.awaitExit(ctx, nil, w); err != nil {
			stuck = append(stuck, err)
		}
	}
	return errors.Join(stuck...)
}

// awaitExit waits for a stopped worker until first is done, then, with a warning
// and every goroutine's stack, StopTimeout more, after which it gives up with
// ErrWorkerNotStopped. It returns nil at once when abandon is closed: the caller
// has left the worker to someone who waits for it.
func (f *flusher) awaitExit(first context.Context, abandon <-chan struct{}, w *worker) error {
	select {
	case <-w.done:
		return nil
	case <-abandon:
		return nil
	case <-first.Done():
	}
	f.log.Warn("span flusher worker still running after it was stopped; waiting longer",
		zap.Int("worker", w.index), zap.Int32s("shards", w.shards()),
		zap.Duration("grace", f.cfg.StopTimeout), zap.ByteString("goroutines", stacks.All()))
	t := time.NewTimer(f.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-abandon:
		return nil
	case <-t.C:
	}
	err := &WorkerError{Worker: w.index, Shards: w.shards(), Err: ErrWorkerNotStopped}
	f.log.Error("span flusher worker does not stop; failing rather than let two workers flush its shards", zap.Error(err))
	return err
}
