package segments

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/creekstream/creek/internal/defaults"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
	"github.com/creekstream/creek/strategies"
)

// FactoryConfig configures the span buffer's strategy factory. Redis, Flusher.Topic
// and Flusher.Producer are required.
type FactoryConfig struct {
	// Redis holds the buffer: a single server or a Cluster.
	Redis redis.UniversalClient
	// Buffer configures the store (timeouts, limits, compression). Its Logger and
	// Metrics, when nil, are set to the factory's.
	Buffer store.Config
	// Flusher configures the flusher strategy: output topic, producer, workers,
	// supervision. Its Logger and Metrics, when nil, are set to the factory's.
	Flusher FlusherConfig
	// BatchSize and BatchTime bound the batches of spans ingested in one Redis round
	// trip (defaults 100 spans, 100 ms).
	BatchSize int
	BatchTime time.Duration
	// IngestConcurrency is how many batches may be on their way to Redis at once
	// (default 2). Above 1, the next batch is decoded and written while an earlier
	// one's round trip is under way; batches are still committed in order.
	IngestConcurrency int
	// CommitMode says when a batch's offsets are committed: once every segment it
	// wrote into is flushed (CommitAfterFlush, the default), or once it is in Redis
	// (CommitAfterIngest).
	CommitMode CommitMode
	// Logger receives the logs. Default zap.NewNop().
	Logger *zap.Logger
	// Metrics receives the metrics, named spans.buffer.*. Default metrics.Noop{}.
	Metrics metrics.Metrics
}

// Defaults of FactoryConfig.
const (
	DefaultBatchSize = 100
	DefaultBatchTime = 100 * time.Millisecond
	// DefaultIngestConcurrency lets one batch's round trip overlap the next: more
	// gains little while one Redis server runs every script on one core.
	DefaultIngestConcurrency = 2
)

// Factory builds the span buffer's chain for the assigned partitions of one input
// topic:
//
//	decode -> Batch -> ingest -> flusher -> commit gate -> CommitOffsets
//
// With CommitAfterFlush the commit gate lets a partition's offsets through only once
// the segments its spans went into are produced (see docs/spanbuffer.md); with
// CommitAfterIngest there is no gate. When Redis has lost its data the chain fails
// with an error wrapping ErrRedisLost.
//
// Ingest writes up to IngestConcurrency batches at once and forwards them in order;
// a batch moves its partitions' clocks only when it is forwarded, so a clock never
// passes a span that is not in Redis yet. A Redis failure is retried until the
// batch is written.
//
// A message that does not decode is reported with processor.Invalid, so it goes to
// the dead-letter queue. The partition a span was read from is its shard, and each
// partition has a Kafka clock of its own, which the flusher flushes its shard at.
// Factory implements processor.AssignmentWatcher (the running flusher is told of
// new partitions) and processor.Shutdowner.
type Factory struct {
	cfg FactoryConfig
	buf *store.Buffer
	log *zap.Logger
	m   metrics.Metrics

	// mu guards current, the flusher of the chain built last.
	mu      sync.Mutex
	current *flusher
}

var (
	_ processor.Factory[processor.KafkaPayload] = (*Factory)(nil)
	_ processor.AssignmentWatcher               = (*Factory)(nil)
	_ processor.Shutdowner                      = (*Factory)(nil)
)

// NewFactory validates cfg and returns a Factory. It does not talk to Redis.
func NewFactory(cfg FactoryConfig) (*Factory, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.Noop{}
	}
	if err := defaults.Ints(
		defaults.Int{Name: "segments: FactoryConfig.BatchSize", Value: &cfg.BatchSize, Default: DefaultBatchSize},
		defaults.Int{Name: "segments: FactoryConfig.IngestConcurrency", Value: &cfg.IngestConcurrency, Default: DefaultIngestConcurrency},
	); err != nil {
		return nil, err
	}
	if err := defaults.Durations(defaults.Duration{Name: "segments: FactoryConfig.BatchTime", Value: &cfg.BatchTime, Default: DefaultBatchTime}); err != nil {
		return nil, err
	}
	if cfg.CommitMode != CommitAfterFlush && cfg.CommitMode != CommitAfterIngest {
		return nil, fmt.Errorf("segments: FactoryConfig.CommitMode is %d; use CommitAfterFlush or CommitAfterIngest", cfg.CommitMode)
	}
	if cfg.Buffer.Logger == nil {
		cfg.Buffer.Logger = cfg.Logger.Named("buffer")
	}
	if cfg.Buffer.Metrics == nil {
		cfg.Buffer.Metrics = cfg.Metrics
	}
	if cfg.Flusher.Logger == nil {
		cfg.Flusher.Logger = cfg.Logger.Named("flusher")
	}
	if cfg.Flusher.Metrics == nil {
		cfg.Flusher.Metrics = cfg.Metrics
	}
	fc, err := cfg.Flusher.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Flusher = fc
	buf, err := store.New(cfg.Redis, cfg.Buffer)
	if err != nil {
		return nil, err
	}
	return &Factory{cfg: cfg, buf: buf, log: cfg.Logger, m: cfg.Metrics}, nil
}

// Create builds the chain for partitions and starts its flusher. It does not wait
// for the flusher's workers: the flusher rejects messages until they have all
// reported healthy, and fails the chain if one does not (see FlusherConfig).
func (f *Factory) Create(commit processor.CommitFunc, partitions []processor.Partition) (processor.Strategy[processor.KafkaPayload], error) {
	opts := []strategies.Option{strategies.WithLogger(f.log), strategies.WithMetrics(f.m)}
	// A partition nothing is read on keeps no time for one segment timeout; see
	// kafkaClock.
	grace := f.cfg.Buffer.Timeout
	if grace == 0 {
		grace = store.DefaultTimeout
	}
	clock := newKafkaClock(grace)
	var tracker *commitTracker
	var commitStep processor.Strategy[int] = strategies.NewCommitOffsets[int](commit, opts...)
	if f.cfg.CommitMode == CommitAfterFlush {
		tracker = newCommitTracker()
		ttl := f.cfg.Buffer.TTL
		if ttl == 0 {
			ttl = store.DefaultTTL
		}
		// Past the TTL, what a commit waits for has expired from Redis.
		commitStep = &commitGate{tracker: tracker, next: commitStep, maxAge: ttl, log: f.log}
	}
	fl := newFlusher(f.buf, clock, commitStep, tracker, f.cfg.Flusher)
	ingest := newIngester(f.buf, clock, fl, tracker, f.cfg.IngestConcurrency, f.cfg.Flusher.RedisTimeout, f.log, safeMetrics{m: f.m, log: f.log})
	batch, err := strategies.NewBatch(strategies.BatchLimits[store.Span]{MaxSize: f.cfg.BatchSize, MaxWait: f.cfg.BatchTime}, processor.Strategy[[]processor.Message[store.Span]](ingest), opts...)
	if err != nil {
		ingest.stop()
		return nil, err
	}
	decode := strategies.NewRunTask(decodeFunc(clock), processor.Strategy[store.Span](batch), opts...)

	if err := fl.start(shardsOf(partitions)); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.current = fl
	f.mu.Unlock()
	return decode, nil
}

// Workers returns the status of the running flusher's workers, by index, for
// health endpoints; nil while no chain runs.
func (f *Factory) Workers() []WorkerStatus {
	f.mu.Lock()
	fl := f.current
	f.mu.Unlock()
	if fl == nil {
		return nil
	}
	return fl.workerStatus()
}

// PartitionsChanged deals the new partitions to the running flusher's workers.
func (f *Factory) PartitionsChanged(partitions []processor.Partition) {
	f.mu.Lock()
	fl := f.current
	f.mu.Unlock()
	if fl != nil {
		fl.setShards(shardsOf(partitions))
	}
}

// Shutdown makes sure no flusher worker is left running, also after a failure.
func (f *Factory) Shutdown() {
	f.mu.Lock()
	fl := f.current
	f.current = nil
	f.mu.Unlock()
	if fl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.Flusher.StopTimeout)
	defer cancel()
	if err := fl.stopAll(ctx); err != nil {
		f.log.Error("span flusher workers still running at shutdown", zap.Error(err))
	}
}

// decodeFunc returns the step that turns a Kafka message into a Span; one that does
// not decode is invalid and goes to the dead-letter queue. Each span is held in its
// partition's clock until it is ingested, so that its segment is not flushed without
// it meanwhile. RunTask runs the step exactly once per message.
func decodeFunc(clock *kafkaClock) func(context.Context, processor.Message[processor.KafkaPayload]) (store.Span, error) {
	return func(_ context.Context, msg processor.Message[processor.KafkaPayload]) (store.Span, error) {
		pos, ok := msg.Origin()
		if !ok {
			return store.Span{}, fmt.Errorf("segments: decode needs messages read from Kafka, got one without an origin (committable %s)", msg.Committable)
		}
		s, err := store.Decode(msg.Payload.Value, pos.Partition.Index)
		if err != nil {
			return store.Span{}, processor.Invalid(msg, err)
		}
		clock.hold(s.Partition, msg.Timestamp)
		return s, nil
	}
}

func shardsOf(partitions []processor.Partition) []int32 {
	out := make([]int32, len(partitions))
	for i, p := range partitions {
		out[i] = p.Index
	}
	return out
}
