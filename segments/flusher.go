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

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
)

// Producer writes flushed segments to Kafka. kafka.Producer satisfies it.
type Producer interface {
	Produce(ctx context.Context, topic string, payload processor.KafkaPayload) *processor.Delivery
}

// Errors a Flusher reports, wrapped in a *WorkerError that names the worker.
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

// FlusherConfig configures a Flusher. Topic and Producer are required; a zero field
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
	// Logger receives the flusher's logs. Default zap.NewNop().
	Logger *zap.Logger
	// Metrics receives the flusher's metrics, named spans.buffer.flusher.*. Default
	// metrics.Noop{}.
	Metrics metrics.Metrics
}

// Defaults of FlusherConfig.
const (
	DefaultMaxUnhealthy      = 60 * time.Second
	DefaultMaxRestarts       = 10
	DefaultBackpressureAfter = 10 * time.Second
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
	durations := []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"MaxUnhealthy", &c.MaxUnhealthy, DefaultMaxUnhealthy},
		{"StartupTimeout", &c.StartupTimeout, 0},
		{"BackpressureAfter", &c.BackpressureAfter, DefaultBackpressureAfter},
		{"IdleInterval", &c.IdleInterval, DefaultIdleInterval},
		{"RedisTimeout", &c.RedisTimeout, DefaultRedisTimeout},
		{"ProduceTimeout", &c.ProduceTimeout, DefaultProduceTimeout},
		{"StopTimeout", &c.StopTimeout, DefaultStopTimeout},
		{"CheckInterval", &c.CheckInterval, DefaultCheckInterval},
	}
	for _, f := range durations {
		if *f.d < 0 {
			return c, fmt.Errorf("segments: FlusherConfig.%s is %v; set it > 0, or 0 for the default", f.name, *f.d)
		}
		if *f.d == 0 {
			*f.d = f.def
		}
	}
	if c.StartupTimeout == 0 {
		c.StartupTimeout = 2 * c.MaxUnhealthy
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

// Flusher is the strategy that emits finished segments. It sits between the ingest
// step and CommitOffsets and forwards every message at once: once spans are in Redis
// their offsets may be committed, and Redis holds them until they are flushed.
//
// Its workers, goroutines that each own some shards, loop: flush due segments,
// produce them, wait for the acknowledgements, remove them from Redis, report
// healthy. A supervisor goroutine replaces a worker that died or stopped reporting,
// never letting the old and the new one run at once. Submit rejects (backpressure)
// while a worker cannot keep up or Redis is nearly full.
//
// The strategy methods are called from the processor's loop goroutine; SetShards,
// SetDrift, SetKafkaTime, Now and Workers may be called from any goroutine.
type Flusher[T any] struct {
	*flusher
	next processor.Strategy[T]
}

// flusher is the part of a Flusher that does not depend on the payload type: what
// the workers and the supervisor share.
type flusher struct {
	buf *Buffer
	cfg FlusherConfig
	log *zap.Logger
	m   metrics.Metrics

	// clock is the Kafka time of each shard, which the workers flush at.
	clock *kafkaClock
	// memRatio holds the float64 bits of Redis's last measured memory ratio.
	memRatio atomic.Uint64
	// fatal is the error that failed the flusher; Poll returns it.
	fatal atomic.Pointer[error]

	// mu guards everything below. It is never held while waiting.
	mu      sync.Mutex
	workers []*worker // by index; nil while a replacement is pending
	// assign holds the shards dealt to each worker index.
	assign [][]int32
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

// NewFlusher returns a Flusher over buf that forwards messages to next. It validates
// cfg; Start starts the workers.
func NewFlusher[T any](buf *Buffer, next processor.Strategy[T], cfg FlusherConfig) (*Flusher[T], error) {
	if buf == nil {
		return nil, errors.New("segments: NewFlusher needs a Buffer")
	}
	if next == nil {
		return nil, errors.New("segments: NewFlusher needs a next step (CommitOffsets)")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Flusher[T]{
		flusher: &flusher{buf: buf, cfg: cfg, log: cfg.Logger, m: cfg.Metrics, clock: newKafkaClock(), busy: make(map[int32]bool)},
		next:    next,
	}, nil
}

// Start deals shards to the workers, starts them and waits until every one has
// reported healthy once. It fails, naming the worker and its shards, when one exits
// or does not report within StartupTimeout or ctx; the workers are then stopped.
func (f *Flusher[T]) Start(ctx context.Context, shards []int32) error {
	f.mu.Lock()
	if f.started {
		f.mu.Unlock()
		return errors.New("segments: Flusher.Start called twice")
	}
	f.started = true
	f.setShardsLocked(shards)
	workers := slices.Clone(f.workers)
	f.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, f.cfg.StartupTimeout)
	defer cancel()
	for _, w := range workers {
		var err error
		select {
		case <-w.reported:
			continue
		case <-w.done:
			err = fmt.Errorf("%w during start-up: %s", ErrWorkerExited, w.exitCause())
		case <-ctx.Done():
			err = fmt.Errorf("%w: no report within %v: %w", ErrStartupTimeout, f.cfg.StartupTimeout, ctx.Err())
		}
		werr := &WorkerError{Worker: w.index, Shards: w.shards(), Err: err}
		f.log.Error("span flusher start-up failed", zap.Error(werr))
		f.fail(werr)
		stopCtx, stopCancel := context.WithTimeout(context.Background(), f.cfg.StopTimeout)
		defer stopCancel()
		if stopErr := f.stopAll(stopCtx); stopErr != nil {
			return errors.Join(werr, stopErr)
		}
		return werr
	}

	superCtx, superCancel := context.WithCancel(context.Background())
	f.mu.Lock()
	f.superCancel, f.superDone = superCancel, make(chan struct{})
	f.mu.Unlock()
	go f.supervise(superCtx)
	return nil
}

// SetShards deals a new shard set over the workers, starting or stopping workers
// when their number changes, without restarting the others. The factory calls it
// when the assignment changes.
func (f *Flusher[T]) SetShards(shards []int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping {
		return
	}
	f.setShardsLocked(shards)
}

func (f *flusher) setShardsLocked(shards []int32) {
	s := slices.Clone(shards)
	slices.Sort(s)
	s = slices.Compact(s)
	f.buf.SetShards(s)

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

// SetDrift sets the clock of every shard to the wall clock plus d. Tests move time
// with it.
func (f *Flusher[T]) SetDrift(d time.Duration) {
	f.clock.setDrift(d)
	f.gauge("spans.buffer.flusher.drift", d.Seconds())
}

// SetKafkaTime sets the clock of every shard to t, moving on with the wall clock. A
// chain that knows each message's partition should let the Factory keep a clock per
// partition instead (see Factory), so that a lagging partition is not flushed at a
// leading one's time.
func (f *Flusher[T]) SetKafkaTime(t time.Time) { f.SetDrift(time.Until(t)) }

// Now returns the time shard is flushed at: the Kafka time of its last ingested
// batch, moved on with the wall clock, but held at the oldest of its spans that were
// read and are not in Redis yet.
func (f *Flusher[T]) Now(shard int32) time.Time {
	return f.clock.now([]int32{shard}, time.Now())[0]
}

// Submit forwards msg to the next step, unless a worker has been at its limit for
// longer than BackpressureAfter or Redis's memory is above MaxMemoryRatio: then it
// rejects msg.
func (f *Flusher[T]) Submit(msg processor.Message[T]) error {
	err := f.submit(msg)
	// Spans held upstream while Submit rejects wait for the flusher itself: holding
	// the clocks at their time could keep it from ever flushing enough to accept.
	f.clock.setUncapped(errors.Is(err, processor.ErrMessageRejected))
	return err
}

func (f *Flusher[T]) submit(msg processor.Message[T]) error {
	if ratio := math.Float64frombits(f.memRatio.Load()); ratio > f.cfg.MaxMemoryRatio {
		f.count("spans.buffer.flusher.hard_backpressure", 1)
		return processor.ErrMessageRejected
	}
	now := time.Now()
	f.mu.Lock()
	var behind *worker
	for _, w := range f.workers {
		if w != nil && w.atLimitFor(now) > f.cfg.BackpressureAfter {
			behind = w
			break
		}
	}
	f.mu.Unlock()
	if behind != nil {
		f.count("spans.buffer.flusher.backpressure", 1, workerTag(behind.index))
		f.log.Debug("span flusher backpressure: a worker is at its flush limit",
			zap.Int("worker", behind.index), zap.Int32s("shards", behind.shards()))
		return processor.ErrMessageRejected
	}
	return f.next.Submit(msg)
}

// Poll returns the error that failed the flusher, if any, and polls the next step.
func (f *Flusher[T]) Poll() error {
	if err := f.fatal.Load(); err != nil {
		return *err
	}
	return f.next.Poll()
}

// Close does nothing: the workers run until Join or Terminate.
func (f *Flusher[T]) Close() {}

// Join stops the workers and waits for them within ctx, and past it for at most
// StopTimeout, since a worker left running would flush its shards a second time
// beside the next flusher; one that still runs then is an error. It then closes and
// joins the next step.
func (f *Flusher[T]) Join(ctx context.Context) error {
	err := f.stopAll(ctx)
	f.next.Close()
	return errors.Join(err, f.next.Join(ctx))
}

// Terminate stops the workers, waiting at most StopTimeout for them, and terminates
// the next step.
func (f *Flusher[T]) Terminate() {
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

// Workers returns the status of every running worker, by index.
func (f *Flusher[T]) Workers() []WorkerStatus {
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
		if err := f.awaitExit(ctx, w); err != nil {
			stuck = append(stuck, err)
		}
	}
	return errors.Join(stuck...)
}

// awaitExit waits for a stopped worker within ctx and then StopTimeout more,
// logging every goroutine's stack if it has to wait past ctx.
func (f *flusher) awaitExit(ctx context.Context, w *worker) error {
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
	}
	f.log.Warn("span flusher worker still running after it was stopped; waiting longer",
		zap.Int("worker", w.index), zap.Int32s("shards", w.shards()),
		zap.Duration("grace", f.cfg.StopTimeout), zap.ByteString("goroutines", allStacks()))
	t := time.NewTimer(f.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-t.C:
	}
	err := &WorkerError{Worker: w.index, Shards: w.shards(), Err: ErrWorkerNotStopped}
	f.log.Error("span flusher worker does not stop; its shards may be flushed twice", zap.Error(err))
	return err
}

func workerTag(i int) metrics.Tag   { return metrics.Tag{Key: "worker", Value: fmt.Sprint(i)} }
func shardTag(s int32) metrics.Tag  { return metrics.Tag{Key: "shard", Value: fmt.Sprint(s)} }
func causeTag(c string) metrics.Tag { return metrics.Tag{Key: "cause", Value: c} }
