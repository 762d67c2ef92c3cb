package segments

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
)

// ConsumerConfig configures NewConsumer: the whole span buffer consumer, from the
// input topic to flushed segments. Brokers, Group, InputTopic, OutputTopic and Redis
// are required.
type ConsumerConfig struct {
	Brokers []string
	Group   string
	// InputTopic carries one span per message; its partitions are the shards.
	InputTopic string
	// OutputTopic receives the segments.
	OutputTopic string
	// DLQTopic receives the messages that are not valid spans. Empty: they are
	// logged, counted and skipped.
	DLQTopic string
	Redis    redis.UniversalClient
	// Buffer, Flusher, BatchSize, BatchTime and IngestConcurrency are as in
	// FactoryConfig. Flusher.Topic and Flusher.Producer are filled in (OutputTopic, a
	// producer on Brokers) when empty, and so is Buffer.Namespace: Group and
	// InputTopic, "<group>:<topic>", so that span buffers of other groups or topics
	// can share the Redis.
	Buffer            store.Config
	Flusher           FlusherConfig
	BatchSize         int
	BatchTime         time.Duration
	IngestConcurrency int
	// CommitMode is as in FactoryConfig: CommitAfterFlush by default.
	CommitMode CommitMode
	// BrokerWait is how long NewConsumer waits for the brokers to become reachable,
	// trying again with a growing pause and logging each failure, before it gives
	// up (default DefaultBrokerWait).
	BrokerWait time.Duration
	// Backend is the Kafka client: Franz (the default) or Sarama. Only the
	// backend's own config below may be set.
	Backend Backend
	// Kafka configures the sarama consumer (Backend Sarama). Brokers and GroupID
	// come from the fields above and must be left empty here; Logger is filled in
	// when nil. The client settings of Kafka.Sarama (TLS, SASL, client id, version:
	// kafka.ClientSettings) are the producer's too.
	Kafka kafka.ConsumerConfig
	// Franz configures the franz-go consumer (Backend Franz), with the same rules
	// as Kafka. Its ClientID, TLS and SASL are the producer's too.
	Franz franz.ConsumerConfig
	// Processor configures the StreamProcessor. Topics comes from InputTopic and
	// must be left empty, as must DLQ.Producer (set DLQTopic); Logger and Metrics are
	// filled in when nil, and PollTimeout defaults to BatchTime.
	Processor processor.Config[processor.KafkaPayload]
	// Logger receives the logs. Default zap.NewNop().
	Logger *zap.Logger
	// Metrics receives the metrics. Default metrics.Noop{}.
	Metrics metrics.Metrics
}

// Backend names the Kafka client a Consumer runs on.
type Backend string

const (
	// Franz is franz-go (package kafka/franz), the default: it passes the same
	// conformance suite as Sarama and consumes faster (docs/benchmarks.md).
	Franz Backend = "franz"
	// Sarama is IBM/sarama (package kafka).
	Sarama Backend = "sarama"
)

// DefaultBrokerWait is how long NewConsumer waits for unreachable brokers.
const DefaultBrokerWait = time.Minute

// Pauses between NewConsumer's attempts to reach the brokers, and the bound of one
// attempt.
const (
	brokerRetryFirst = 250 * time.Millisecond
	brokerRetryMax   = 5 * time.Second
	brokerAttempt    = 10 * time.Second
)

// Consumer is a ready-to-run span buffer: a Kafka consumer, a StreamProcessor with
// the span buffer's Factory and a dead-letter queue, and the producer they share.
//
// When Redis has lost the span buffer's data (ErrRedisLost), Run builds a new Kafka
// consumer and processor and goes on: the new consumer joins the group afresh, so
// every partition is read again from its committed offset.
type Consumer struct {
	// proc is owned by Run once it is called.
	proc     *processor.StreamProcessor[processor.KafkaPayload]
	producer closingWriter
	factory  *Factory
	// cfg and pc configure the Kafka consumer and processor Run builds again.
	cfg ConsumerConfig
	pc  processor.Config[processor.KafkaPayload]
	log *zap.Logger
	m   safeMetrics
}

// closingWriter is either backend's producer.
type closingWriter interface {
	kafka.Writer
	Close(ctx context.Context) error
}

// producerFunc connects the producer of cfg's backend; tests replace
// connectProducer with it.
type producerFunc func(ctx context.Context, cfg ConsumerConfig) (closingWriter, error)

// NewConsumer is NewConsumerContext with a context that is never cancelled.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	return NewConsumerContext(context.Background(), cfg)
}

// NewConsumerContext validates cfg and connects to Kafka, waiting up to BrokerWait
// (or until ctx is done) for unreachable brokers. Run starts consuming.
func NewConsumerContext(ctx context.Context, cfg ConsumerConfig) (*Consumer, error) {
	return newConsumer(ctx, cfg, connectProducer)
}

func newConsumer(ctx context.Context, cfg ConsumerConfig, connect producerFunc) (*Consumer, error) {
	switch {
	case cfg.InputTopic == "":
		return nil, errors.New("segments: ConsumerConfig.InputTopic is empty; name the topic spans are read from")
	case cfg.OutputTopic == "":
		return nil, errors.New("segments: ConsumerConfig.OutputTopic is empty; name the topic segments are written to")
	case cfg.Redis == nil:
		return nil, errors.New("segments: ConsumerConfig.Redis is nil; give a Redis client")
	case len(cfg.Kafka.Brokers) > 0 || cfg.Kafka.GroupID != "":
		return nil, errors.New("segments: ConsumerConfig.Kafka.Brokers and GroupID are set; set ConsumerConfig.Brokers and Group instead")
	case len(cfg.Franz.Brokers) > 0 || cfg.Franz.GroupID != "":
		return nil, errors.New("segments: ConsumerConfig.Franz.Brokers and GroupID are set; set ConsumerConfig.Brokers and Group instead")
	case len(cfg.Processor.Topics) > 0:
		return nil, errors.New("segments: ConsumerConfig.Processor.Topics is set; the consumer reads InputTopic only")
	case cfg.Processor.DLQ != nil && cfg.Processor.DLQ.Producer != nil:
		return nil, errors.New("segments: ConsumerConfig.Processor.DLQ.Producer is set; set ConsumerConfig.DLQTopic instead")
	case cfg.BrokerWait < 0:
		return nil, fmt.Errorf("segments: ConsumerConfig.BrokerWait is %v; set it > 0, or 0 for %v", cfg.BrokerWait, DefaultBrokerWait)
	}
	if cfg.BrokerWait == 0 {
		cfg.BrokerWait = DefaultBrokerWait
	}
	if cfg.Backend == "" {
		cfg.Backend = Franz
	}
	switch {
	case cfg.Backend != Franz && cfg.Backend != Sarama:
		return nil, fmt.Errorf("segments: ConsumerConfig.Backend %q is unknown; use segments.Franz or segments.Sarama", cfg.Backend)
	case cfg.Backend == Franz && !reflect.ValueOf(cfg.Kafka).IsZero():
		return nil, fmt.Errorf("segments: ConsumerConfig.Kafka configures the sarama backend, but Backend is %q; set Backend: segments.Sarama, or move the settings to ConsumerConfig.Franz", cfg.Backend)
	case cfg.Backend == Sarama && !reflect.ValueOf(cfg.Franz).IsZero():
		return nil, errors.New("segments: ConsumerConfig.Franz configures the franz-go backend, but Backend is \"sarama\"; set Backend: segments.Franz, or move the settings to ConsumerConfig.Kafka")
	}
	if cfg.Buffer.Namespace == "" {
		if strings.ContainsAny(cfg.Group, "{} \t\r\n") {
			return nil, fmt.Errorf("segments: ConsumerConfig.Group %q holds braces or whitespace, which the Redis namespace derived from it must not; set Buffer.Namespace", cfg.Group)
		}
		cfg.Buffer.Namespace = cfg.Group + ":" + cfg.InputTopic
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.Noop{}
	}
	// The producer writes segments and the DLQ to the consumer's cluster, through
	// the same network, security and client settings.
	producer, err := awaitProducer(ctx, connect, cfg)
	if err != nil {
		return nil, err
	}
	c := &Consumer{producer: producer, log: cfg.Logger, m: safeMetrics{m: cfg.Metrics, log: cfg.Logger}}
	fail := func(err error) (*Consumer, error) {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultStopTimeout)
		defer cancel()
		return nil, errors.Join(err, producer.Close(ctx))
	}

	if cfg.Flusher.Topic == "" {
		cfg.Flusher.Topic = cfg.OutputTopic
	}

	if cfg.Flusher.Producer == nil {
		cfg.Flusher.Producer = producer
	}
	c.factory, err = NewFactory(FactoryConfig{
		Redis: cfg.Redis, Buffer: cfg.Buffer, Flusher: cfg.Flusher,
		BatchSize: cfg.BatchSize, BatchTime: cfg.BatchTime, IngestConcurrency: cfg.IngestConcurrency,
		CommitMode: cfg.CommitMode, Logger: cfg.Logger, Metrics: cfg.Metrics,
	})
	if err != nil {
		return fail(err)
	}

	pc := cfg.Processor
	pc.Topics = []string{cfg.InputTopic}
	if pc.PollTimeout == 0 {
		// A batch is handed to ingest only when the loop comes round, so a longer
		// poll would keep the last spans of a burst waiting past BatchTime.
		pc.PollTimeout = c.factory.cfg.BatchTime
	}
	if pc.Logger == nil {
		pc.Logger = cfg.Logger.Named("processor")
	}
	if pc.Metrics == nil {
		pc.Metrics = cfg.Metrics
	}
	if cfg.DLQTopic != "" {
		dlq := processor.DLQPolicy[processor.KafkaPayload]{}
		if pc.DLQ != nil {
			dlq = *pc.DLQ
		}
		dlq.Producer = kafka.NewDLQProducer(producer, cfg.DLQTopic)
		pc.DLQ = &dlq
	}
	c.cfg, c.pc = cfg, pc
	if c.proc, err = c.newProcessor(); err != nil {
		return fail(err)
	}
	return c, nil
}

// newProcessor builds a Kafka consumer and a processor running the factory on it.
func (c *Consumer) newProcessor() (*processor.StreamProcessor[processor.KafkaPayload], error) {
	consumer, err := buildConsumer(c.cfg)
	if err != nil {
		return nil, err
	}
	proc, err := processor.New(consumer, processor.Factory[processor.KafkaPayload](c.factory), c.pc)
	if err != nil {
		return nil, errors.Join(err, consumer.Close())
	}
	return proc, nil
}

// awaitProducer connects cfg's producer, trying again while the brokers are
// unreachable, with a pause growing from brokerRetryFirst to brokerRetryMax, until
// cfg.BrokerWait has passed or ctx is done.
func awaitProducer(ctx context.Context, connect producerFunc, cfg ConsumerConfig) (closingWriter, error) {
	log, wait := cfg.Logger, cfg.BrokerWait
	start := time.Now()
	pause := brokerRetryFirst
	for attempt := 1; ; attempt++ {
		p, err := connect(ctx, cfg)
		if err == nil {
			if attempt > 1 {
				log.Info("Kafka brokers reachable; starting", zap.Strings("brokers", cfg.Brokers), zap.Duration("waited", time.Since(start).Round(time.Millisecond)))
			}
			return p, nil
		}
		waited := time.Since(start)
		if waited+pause > wait {
			return nil, fmt.Errorf("segments: Kafka brokers %v unreachable for %v (BrokerWait %v), %d attempts: %w", cfg.Brokers, waited.Round(time.Millisecond), wait, attempt, err)
		}
		log.Warn("Kafka brokers unreachable; waiting for them before starting",
			zap.Strings("brokers", cfg.Brokers), zap.Int("attempt", attempt), zap.Duration("waited", waited.Round(time.Millisecond)),
			zap.Duration("retry_in", pause), zap.Duration("broker_wait", wait), zap.Error(err))
		// A few attempts at most: a timer per pause costs nothing that matters.
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return nil, fmt.Errorf("segments: waiting for Kafka brokers %v: %w (last error: %w)", cfg.Brokers, ctx.Err(), err)
		}
		pause = min(2*pause, brokerRetryMax)
	}
}

// Workers returns the status of the flusher's workers; see Factory.Workers.
func (c *Consumer) Workers() []WorkerStatus { return c.factory.Workers() }

// Run consumes until ctx is cancelled (nil is returned) or processing fails, then
// closes the producer, waiting at most StopTimeout for its last messages. When
// processing fails because Redis lost the span buffer's data, Run rejoins the group
// with a new Kafka consumer, which reads every partition again from its committed
// offset, and goes on.
func (c *Consumer) Run(ctx context.Context) error {
	err := c.proc.Run(ctx)
	for err != nil && ctx.Err() == nil && errors.Is(err, ErrRedisLost) {
		c.m.count("spans.buffer.rewinds", 1)
		c.log.Error("span buffer rewinding: rejoining the group so that every partition is read again from its committed offset", zap.Error(err))
		proc, perr := c.newProcessor()
		if perr != nil {
			err = errors.Join(err, fmt.Errorf("segments: rebuilding the consumer after a Redis loss: %w", perr))
			break
		}
		c.proc = proc
		err = c.proc.Run(ctx)
	}
	closeCtx, cancel := context.WithTimeout(context.Background(), c.factory.cfg.Flusher.StopTimeout)
	defer cancel()
	if cerr := c.producer.Close(closeCtx); cerr != nil {
		err = errors.Join(err, fmt.Errorf("segments: close producer: %w", cerr))
	}
	return err
}

// connectProducer builds the producer of segments and the DLQ on cfg's backend,
// with the consumer's network, security and client settings, and returns it once a
// broker answers. sarama's constructor connects; franz-go's does not, so its
// producer is pinged, within brokerAttempt.
func connectProducer(ctx context.Context, cfg ConsumerConfig) (closingWriter, error) {
	log := cfg.Logger.Named("producer")
	if cfg.Backend == Sarama {
		p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: cfg.Brokers, Sarama: kafka.ClientSettings(cfg.Kafka.Sarama), Logger: log, Metrics: cfg.Metrics})
		if err != nil {
			return nil, err
		}
		return p, nil
	}
	f := cfg.Franz
	p, err := franz.NewProducer(franz.ProducerConfig{Brokers: cfg.Brokers, ClientID: f.ClientID, TLS: f.TLS, SASL: f.SASL, Logger: log, Metrics: cfg.Metrics})
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, brokerAttempt)
	defer cancel()
	if err := p.Ping(pingCtx); err != nil {
		return nil, errors.Join(err, p.Close(pingCtx))
	}
	return p, nil
}

// buildConsumer builds the consumer on cfg's backend.
func buildConsumer(cfg ConsumerConfig) (processor.Consumer[processor.KafkaPayload], error) {
	log := cfg.Logger.Named("consumer")
	if cfg.Backend == Sarama {
		kc := cfg.Kafka
		kc.Brokers, kc.GroupID = cfg.Brokers, cfg.Group
		if kc.Logger == nil {
			kc.Logger = log
		}
		c, err := kafka.NewConsumer(kc)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	fc := cfg.Franz
	fc.Brokers, fc.GroupID = cfg.Brokers, cfg.Group
	if fc.Logger == nil {
		fc.Logger = log
	}
	c, err := franz.NewConsumer(fc)
	if err != nil {
		return nil, err
	}
	return c, nil
}
