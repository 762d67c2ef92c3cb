package franz

// Produce, Close and Instrument may be called from any goroutine, concurrently.
// mu guards closed; sending counts the Produce calls past the check of
// closed, which Close waits for before it flushes. kgo calls the promises on its
// own goroutine, serially; they only resolve deliveries. inst, which the promises
// and kgo's logging read, is replaced whole by Instrument. ctx and cancel, the records' lifetime, are set by
// NewProducer and ended by Close; the other fields never change either.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/internal/instruments"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
)

// ProducerConfig configures NewProducer. Brokers is required.
type ProducerConfig struct {
	// Brokers are the bootstrap brokers, as host:port.
	Brokers []string
	// ClientID is the client id sent to the brokers. Default: kgo's.
	ClientID string
	// TLS, when set, makes every connection use TLS with this configuration.
	TLS *tls.Config
	// SASL, when set, authenticates every connection with this mechanism.
	SASL sasl.Mechanism
	// Logger receives the producer's and kgo's diagnostics. Default: the logger of
	// the first processor that uses the producer (see Producer.Instrument), else
	// zap.NewNop().
	Logger *zap.Logger
	// Metrics receives producer.produce_status counts. Default: the metrics of the
	// first processor that uses the producer, else metrics.Noop{}.
	Metrics metrics.Metrics
	// ClientOptions are further kgo options, such as acks, idempotency,
	// compression, linger or the partitioner; the fields above override them.
	// kgo's defaults: all in-sync replicas acknowledge, idempotent writes.
	ClientOptions []kgo.Opt
}

func (cfg ProducerConfig) build() (ProducerConfig, error) {
	if len(cfg.Brokers) == 0 {
		return cfg, errors.New("franz: ProducerConfig.Brokers is empty; give at least one host:port")
	}
	return cfg, nil
}

// Producer writes messages asynchronously through kgo and resolves a
// processor.Delivery for each one with the position it was written to or the
// error. kgo reports the records of one partition in the order they were given.
type Producer struct {
	cl *kgo.Client
	// inst is what the producer logs and records through.
	inst *instruments.Set
	// ctx is the lifetime of buffered records; Close cancels it last.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	sending sync.WaitGroup
}

// NewProducer validates cfg and creates the client; kgo connects on first use.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	cfg, err := cfg.build()
	if err != nil {
		return nil, err
	}
	p := &Producer{inst: instruments.New(cfg.Logger, cfg.Metrics)}
	// kgo's logger is fixed when the client is made, so it reads the producer's,
	// which Instrument may set later.
	opts := append(clientOpts(cfg.ClientOptions, cfg.Brokers, cfg.ClientID, cfg.TLS, cfg.SASL, zap.NewNop()),
		kgo.WithLogger(producerLogger{p}))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("franz: producer client for %v: %w", cfg.Brokers, err)
	}
	p.cl = cl
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

var _ processor.Instrumented = (*Producer)(nil)

// Instrument gives the producer, and kgo's logging, the processor's logger and
// metrics where ProducerConfig left them unset. processor.New calls it through the
// pipeline that produces with it; when several processors share the producer, the
// first one's are used. It is safe to call while the producer is in use.
func (p *Producer) Instrument(inst processor.Instruments) {
	p.inst.Instrument(inst)
}

// producerLogger is kgo's logger of a Producer: the producer's current logger.
type producerLogger struct{ p *Producer }

func (l producerLogger) Level() kgo.LogLevel { return zapLogger{l.p.inst.Load().Logger}.Level() }

func (l producerLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	zapLogger{l.p.inst.Load().Logger}.Log(level, msg, keyvals...)
}

// Produce hands payload to kgo for topic and returns its pending delivery. It
// blocks only while kgo's buffer is full, and never past ctx: the delivery is then
// resolved with ctx's error. Once handed over, the record no longer depends on ctx.
func (p *Producer) Produce(ctx context.Context, topic string, payload processor.KafkaPayload) *processor.Delivery {
	d := processor.NewDelivery()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		d.Resolve(processor.Position{}, kafka.ErrProducerClosed)
		return d
	}
	p.sending.Add(1)
	p.mu.Unlock()
	defer p.sending.Done()

	rec := &kgo.Record{Topic: topic, Key: payload.Key, Value: payload.Value}
	if len(payload.Headers) > 0 {
		rec.Headers = make([]kgo.RecordHeader, len(payload.Headers))
		for i, h := range payload.Headers {
			rec.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
	}
	// kgo cancels a buffered record whose context ends; the caller's ctx must
	// bound only the wait for room, so the record gets a context of its own that
	// ctx cancels only until Produce returns.
	rctx, stop := context.WithCancel(p.ctx)
	unhook := context.AfterFunc(ctx, stop)
	p.cl.Produce(rctx, rec, func(r *kgo.Record, err error) {
		stop()
		inst := p.inst.Load()
		if err != nil {
			d.Resolve(processor.Position{}, fmt.Errorf("franz: produce to %s: %w", r.Topic, err))
			inst.Metrics.Increment("producer.produce_status", 1, metrics.Tag{Key: "status", Value: "error"}, metrics.Tag{Key: "topic", Value: r.Topic})
			inst.Logger.Warn("produce failed", zap.String("topic", r.Topic), zap.Error(err))
			return
		}
		d.Resolve(processor.Position{Partition: processor.Partition{Topic: r.Topic, Index: r.Partition}, Offset: r.Offset}, nil)
		inst.Metrics.Increment("producer.produce_status", 1, metrics.Tag{Key: "status", Value: "success"}, metrics.Tag{Key: "topic", Value: r.Topic})
	})
	unhook()
	return d
}

// Ping returns once a broker answers, or with the error of the last attempt when ctx
// is done. kgo connects lazily, so NewProducer succeeds with no broker reachable;
// Ping is how a caller finds out before it starts.
func (p *Producer) Ping(ctx context.Context) error {
	if err := p.cl.Ping(ctx); err != nil {
		return fmt.Errorf("franz: no broker answers: %w", err)
	}
	return nil
}

// Close stops accepting messages and waits, within ctx, until every message
// handed to kgo has been written or has failed and its delivery is resolved. If
// ctx ends first, the messages still buffered fail with kgo's client-closed error
// and Close returns ctx's error.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	first := !p.closed
	p.closed = true
	p.mu.Unlock()
	if !first {
		return nil
	}
	// Produce calls blocked on a full buffer end as the buffer drains, or when
	// ctx ends, which cancels their records.
	stopWaiting := context.AfterFunc(ctx, p.cancel)
	p.sending.Wait()
	var err error
	if ferr := p.cl.Flush(ctx); ferr != nil {
		err = fmt.Errorf("franz: close producer: outstanding messages not flushed: %w", ferr)
	}
	stopWaiting()
	// Close fails whatever is still buffered, resolving every delivery.
	p.cl.Close()
	p.cancel()
	return err
}
