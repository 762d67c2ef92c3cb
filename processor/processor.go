package processor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/creekstream/creek/internal/commitstate"
	"github.com/creekstream/creek/internal/defaults"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/stuckdetector"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/zap"
)

// Config configures a StreamProcessor. Zero fields take the defaults named on them.
type Config[T any] struct {
	// Topics are the topics to consume. Required, and no name may be empty. Which
	// names are valid is the consumer's to say: kafka.Consumer refuses, when Run
	// subscribes, a name Kafka cannot hold, and waits for a topic that does not
	// exist yet without creating it.
	Topics []string
	// CommitPolicy says how often staged offsets are committed (default once per
	// second).
	CommitPolicy CommitPolicy
	// CommitTimeout bounds one commit to the broker (default 10 s).
	CommitTimeout time.Duration
	// JoinTimeout bounds the wait for a strategy's work when it is closed at a
	// rebalance or at shutdown, and the wait for a cooperative revocation's offsets
	// (default 25 s). Keep it well inside the group's rebalance timeout. Partitions
	// lost with the group session are not waited for this long: their chain is
	// joined within 1 s (or JoinTimeout, if shorter) and nothing is committed.
	JoinTimeout time.Duration
	// BackpressurePauseAfter is how long the strategy may reject messages before the
	// assigned partitions are paused (default 5 s).
	BackpressurePauseAfter time.Duration
	// PollTimeout is the longest wait for a message from the consumer (default 1 s).
	PollTimeout time.Duration
	// PausedPollTimeout is the wait for a message while paused, which only keeps the
	// group membership alive (default 100 ms).
	PausedPollTimeout time.Duration
	// DLQ configures the dead-letter queue. Without it invalid messages are logged,
	// counted and skipped.
	DLQ *DLQPolicy[T]
	// Logger receives the processor's logs (default: discard).
	Logger *zap.Logger
	// Metrics is the backend the processor's figures go to (default: discard). The
	// processor buffers them and flushes at most once a second. Names carry no prefix:
	// the backend adds one (metrics.DefaultPrefix unless configured).
	Metrics metrics.Metrics
	// Stuck configures the watchdog that reports a loop which stopped coming round.
	Stuck StuckConfig
	// Propagator carries trace context through message headers (for the W3C
	// traceparent, propagation.TraceContext{}). When set and T is KafkaPayload, the
	// processor extracts it from the headers of every message it polls into the
	// message's context (Message.Context), which user functions receive; the
	// dead-letter queue injects the message's trace context into the headers of what
	// it sends and runs the send in a context carrying it. Nil, the default, changes
	// nothing; otel's global propagator is never read.
	Propagator propagation.TextMapPropagator

	// exit ends the process after the stuck hard limit; tests replace it.
	exit func(code int)
}

// StuckConfig configures the watchdog of the processor's loop.
type StuckConfig struct {
	// Timeout is how long the loop may go without coming round before it is reported
	// as stuck, again at most once per Timeout while it stays so (default 60 s).
	Timeout time.Duration
	// HardLimit is how long the loop may stay stuck before ExitOnStuck applies. 0
	// means never.
	HardLimit time.Duration
	// ExitOnStuck exits the process with status 1 once the loop has been stuck for
	// HardLimit, so that an orchestrator restarts it.
	ExitOnStuck bool
}

const (
	defaultCommitTimeout     = 10 * time.Second
	defaultJoinTimeout       = 25 * time.Second
	defaultPauseAfter        = 5 * time.Second
	defaultPollTimeout       = time.Second
	defaultPausedPollTimeout = 100 * time.Millisecond
)

func (c Config[T]) withDefaults() (Config[T], error) {
	if len(c.Topics) == 0 {
		return c, errors.New("processor: Config.Topics is empty; name at least one topic to consume")
	}
	if i := slices.Index(c.Topics, ""); i >= 0 {
		return c, fmt.Errorf("processor: Config.Topics[%d] is empty; give every topic a name", i)
	}
	if c.CommitPolicy == (CommitPolicy{}) {
		c.CommitPolicy = DefaultCommitPolicy()
	}
	if err := c.CommitPolicy.Validate(); err != nil {
		return c, fmt.Errorf("processor: Config.CommitPolicy: %w", err)
	}
	if err := defaults.Durations(
		defaults.Duration{Name: "processor: Config.CommitTimeout", Value: &c.CommitTimeout, Default: defaultCommitTimeout},
		defaults.Duration{Name: "processor: Config.JoinTimeout", Value: &c.JoinTimeout, Default: defaultJoinTimeout},
		defaults.Duration{Name: "processor: Config.BackpressurePauseAfter", Value: &c.BackpressurePauseAfter, Default: defaultPauseAfter},
		defaults.Duration{Name: "processor: Config.PollTimeout", Value: &c.PollTimeout, Default: defaultPollTimeout},
		defaults.Duration{Name: "processor: Config.PausedPollTimeout", Value: &c.PausedPollTimeout, Default: defaultPausedPollTimeout},
		defaults.Duration{Name: "processor: Config.Stuck.Timeout", Value: &c.Stuck.Timeout, Default: stuckdetector.DefaultTimeout},
	); err != nil {
		return c, err
	}
	if c.Stuck.HardLimit < 0 {
		return c, fmt.Errorf("processor: Config.Stuck.HardLimit is %v; set it > 0, or 0 for none", c.Stuck.HardLimit)
	}
	if c.Stuck.ExitOnStuck && c.Stuck.HardLimit == 0 {
		return c, errors.New("processor: Config.Stuck.ExitOnStuck needs Stuck.HardLimit > 0 to know when to exit")
	}
	if err := (stuckdetector.Config{Timeout: c.Stuck.Timeout, HardLimit: c.Stuck.HardLimit}).Validate(); err != nil {
		return c, fmt.Errorf("processor: Config.Stuck: %w", err)
	}
	if c.DLQ != nil {
		p, err := c.DLQ.withDefaults()
		if err != nil {
			return c, err
		}
		c.DLQ = &p
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = metrics.Noop{}
	}
	if c.exit == nil {
		c.exit = os.Exit
	}
	return c, nil
}

// StreamProcessor polls a Consumer and drives the strategy chain a Factory builds for
// the current assignment, committing offsets as the chain reports them done.
//
// Run owns all of its state on one goroutine; a StreamProcessor runs once.
type StreamProcessor[T any] struct {
	consumer Consumer[T]
	factory  Factory[T]
	cfg      Config[T]
	log      *zap.Logger
	started  atomic.Bool

	// The rest is owned by the goroutine running Run.
	m       loopMetrics
	metrics *metrics.Buffer
	// lastGauges is when the gauges were last set (loop.go).
	lastGauges time.Time
	// lag is what the lag gauges need (lag.go).
	lag lagGauges
	// beat is what the watchdog watches; hb is how the loop reaches it (tests put a
	// recorder in between).
	beat  *stuckdetector.Heartbeat
	hb    heartbeat
	phase string
	// epoch anchors clock; now is the latest reading of it, sinceClock the
	// iterations since, and clockDue is set by a ticker when clockPeriod has passed
	// (loop.go).
	epoch, now time.Time
	sinceClock int
	clockDue   atomic.Bool
	// buffered is the consumer, if it can tell when Poll will not wait.
	buffered bufferedConsumer
	// runs polls the consumer for runs of messages, into runBuf (loop.go).
	runs   runPoller[T]
	runBuf []Message[T]
	// chunk is how many messages of a run go to a RunSubmitter at once (loop.go).
	chunk     int
	policy    *commitstate.State[Partition]
	strategy  Strategy[T]
	assigned  map[Partition]bool
	staged    map[Partition]int64
	committed map[Partition]int64
	// submitted is the next offset after the last message accepted per partition, to
	// know when a cooperative revocation has committed everything it was given.
	submitted map[Partition]int64
	// invalid holds, per partition, the offsets of invalid messages, ascending,
	// that the staged offsets have not reached yet; first is the offset of the
	// first message polled from each assigned partition (invalid.go).
	invalid map[Partition][]int64
	first   map[Partition]int64
	// in and out cache the maps' entries of the partitions in use (hot.go).
	in, out hotPartition
	// retryCommitAt holds back commits after a failed one. commitDueAt is the
	// earliest time an interval-only policy can want a commit: the last commit plus
	// MinInterval, or retryCommitAt.
	retryCommitAt, commitDueAt time.Time
	bp                         backpressure[T]
	ctxs                       contexts
	dlq                        *dlq[T]
	// extract, when set, gives a polled message the trace context of its headers.
	extract func(context.Context, T) context.Context
	// cbErr is an error from a rebalance callback, which has no way to return one;
	// the loop fails with it once Poll returns.
	cbErr error
}

// New returns a StreamProcessor that consumes cfg.Topics with consumer and processes
// them with chains built by factory. It validates cfg once, and the factory if it is
// a Validator; the errors say what to fix. It then gives cfg.Logger and cfg.Metrics
// to the consumer, the factory and the DLQ producer that are Instrumented, so that
// they are configured in one place.
func New[T any](consumer Consumer[T], factory Factory[T], cfg Config[T]) (*StreamProcessor[T], error) {
	if consumer == nil {
		return nil, errors.New("processor: New: consumer is nil")
	}
	if factory == nil {
		return nil, errors.New("processor: New: factory is nil")
	}
	inst := Instruments{Logger: cfg.Logger, Metrics: cfg.Metrics, Propagator: cfg.Propagator}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if v, ok := factory.(Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("processor: New: %w", err)
		}
	}
	instrument(inst, consumer, factory, cfg.DLQ)
	start := time.Now()
	policy, err := cfg.CommitPolicy.newState(start)
	if err != nil {
		return nil, err
	}
	p := &StreamProcessor[T]{
		consumer:    consumer,
		factory:     factory,
		cfg:         cfg,
		log:         cfg.Logger,
		policy:      policy,
		commitDueAt: start.Add(cfg.CommitPolicy.MinInterval),
		assigned:    make(map[Partition]bool),
		staged:      make(map[Partition]int64),
		committed:   make(map[Partition]int64),
		submitted:   make(map[Partition]int64),
		invalid:     make(map[Partition][]int64),
		first:       make(map[Partition]int64),
		beat:        new(stuckdetector.Heartbeat),
		ctxs:        newContexts(),
	}
	p.hb = p.beat
	p.buffered, _ = consumer.(bufferedConsumer)
	p.runs, _ = consumer.(runPoller[T])
	if p.runs == nil {
		p.runs = pollOne[T]{consumer}
	}
	p.runBuf = make([]Message[T], 0, maxRun)
	p.lag = newLagGauges(consumer)
	if cfg.DLQ != nil {
		fetcher, _ := consumer.(Fetcher[T])
		p.dlq = newDLQ(*cfg.DLQ, fetcher, cfg.Logger, &p.m, p.holdForDLQ, p.releaseForDLQ)
		p.dlq.prop = cfg.Propagator
	}
	p.extract = newTraceExtractor[T](cfg.Propagator)
	return p, nil
}

// instrument hands inst to the consumer, the factory and the DLQ producer that
// implement Instrumented.
func instrument[T any](inst Instruments, consumer Consumer[T], factory Factory[T], dlq *DLQPolicy[T]) {
	parts := []any{consumer, factory}
	if dlq != nil {
		parts = append(parts, dlq.Producer)
	}
	for _, part := range parts {
		if in, ok := part.(Instrumented); ok {
			in.Instrument(inst)
		}
	}
}

// Run consumes until ctx is cancelled or processing fails. On cancellation it joins
// the strategy (committing what it finished), closes the consumer and shuts the
// factory down, in that order, and returns nil. On failure it terminates the strategy
// without committing, closes the consumer, shuts the factory down and returns the
// error.
func (p *StreamProcessor[T]) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("processor: StreamProcessor.Run called twice; build a new processor")
	}
	stop := p.startObservers()
	defer stop()
	p.ctxs.base = context.WithoutCancel(ctx)

	cb := RebalanceCallbacks{OnAssign: p.onAssign, OnRevoke: p.onRevoke, OnLost: p.onLost}
	if err := p.consumer.Subscribe(p.cfg.Topics, cb); err != nil {
		return p.fail(fmt.Errorf("processor: subscribe to %v: %w", p.cfg.Topics, err))
	}
	if err := p.iterate(ctx); err != nil {
		return p.fail(err)
	}
	return p.shutdown()
}

// shutdown ends a run that was asked to stop.
func (p *StreamProcessor[T]) shutdown() error {
	start := time.Now()
	defer func() { p.m.shutdownTime.Add(time.Since(start)) }()
	p.log.Info("processor: shutting down")
	var errs []error
	if err := p.closeStrategy(); err != nil {
		errs = append(errs, err)
	}
	if err := p.consumer.Close(); err != nil {
		errs = append(errs, fmt.Errorf("processor: close consumer: %w", err))
	}
	p.shutdownFactory()
	return errors.Join(errs...)
}

// fail ends a run after err: nothing more is committed.
func (p *StreamProcessor[T]) fail(err error) error {
	fields := []zap.Field{zap.Error(err)}
	if pe, ok := errors.AsType[*PanicError](err); ok {
		fields = append(fields, zap.ByteString("stack", pe.Stack))
	}
	p.log.Error("processor: failed", fields...)
	p.ctxs.endChain()
	if p.strategy != nil {
		if perr := protect(p.strategy.Terminate); perr != nil {
			p.log.Error("processor: terminate strategy", zap.Error(perr))
		}
		p.strategy = nil
		p.m.closeStrategy.Add(1)
	}
	if cerr := p.consumer.Close(); cerr != nil {
		p.log.Error("processor: close consumer after failure", zap.Error(cerr))
	}
	p.shutdownFactory()
	return err
}

func (p *StreamProcessor[T]) shutdownFactory() {
	if s, ok := p.factory.(Shutdowner); ok {
		if err := protect(s.Shutdown); err != nil {
			p.log.Error("processor: factory shutdown", zap.Error(err))
		}
	}
}

// PanicError is a panic recovered from a strategy, a factory or a consumer callback.
type PanicError struct {
	Value any
	// Stack is the panicking goroutine's stack.
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("processor: panic: %v", e.Value) }

// protect calls f and turns a panic into a *PanicError, so that a panicking strategy
// stops the processor cleanly instead of taking the process down mid-commit.
func protect(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	f()
	return nil
}

// startObservers starts the metrics buffer, the watchdog and the clock's ticker; the
// returned function records the figures still held by the loop and stops them.
func (p *StreamProcessor[T]) startObservers() (stop func()) {
	buf, err := metrics.NewBuffer(p.cfg.Metrics, metrics.BufferConfig{})
	if err != nil {
		// The zero BufferConfig is valid; an error here is a bug in package metrics.
		panic(fmt.Sprintf("processor: metrics.NewBuffer with the zero config: %v", err))
	}
	p.metrics, p.m = buf, newLoopMetrics(buf)
	p.epoch = time.Now()
	p.now, p.lastGauges = p.epoch, p.epoch
	wd := stuckdetector.Start(p.beat, p.stuckConfig())
	stopTicker, tickerDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(tickerDone)
		p.runClockTicker(stopTicker)
	}()
	return func() {
		close(stopTicker)
		<-tickerDone
		wd.Stop()
		p.addPerMessageCounts()
		p.recordGauges(time.Now())
		buf.Close()
	}
}

func (p *StreamProcessor[T]) stuckConfig() stuckdetector.Config {
	c := stuckdetector.Config{
		Timeout:   p.cfg.Stuck.Timeout,
		HardLimit: p.cfg.Stuck.HardLimit,
		Logger:    p.log,
		Metrics:   p.metrics,
	}
	if p.cfg.Stuck.ExitOnStuck {
		c.OnHardLimit = func(stall time.Duration) {
			p.log.Error("processor: loop stuck past the hard limit; exiting so that the process is restarted",
				zap.Duration("stall", stall), zap.String("phase", p.beat.Phase()))
			_ = p.log.Sync()
			p.cfg.exit(1)
		}
	}
	return c
}
