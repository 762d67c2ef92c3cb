package kafka

// Produce, Close and Instrument may be called from any goroutine, concurrently. mu
// guards closed and given; sending counts the Produce calls past the check of
// closed, which Close waits for before it closes sarama's input, and closing,
// which Close closes once, stops those blocked on a full input. inst, which
// resolve reads for every report, is replaced whole by Instrument. The goroutine
// NewProducer starts, resolve, alone reads sarama's Successes and Errors and
// closes resolved when both are drained. The other fields are set by NewProducer
// and never change.

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka/internal/instruments"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
)

// ErrProducerClosed resolves deliveries of messages produced after Close.
var ErrProducerClosed = errors.New("kafka: producer is closed")

// ProducerConfig configures NewProducer. Brokers is required.
type ProducerConfig struct {
	// Brokers are the bootstrap brokers, as host:port.
	Brokers []string
	// Sarama carries client and producer settings: TLS, SASL, the protocol
	// version, Producer.RequiredAcks, Producer.Idempotent, compression, batching.
	// It is copied; nil means sarama.NewConfig() with Version 2.8. The producer
	// always turns on Return.Successes and Return.Errors, which it needs to
	// resolve deliveries. It leaves Metadata.AllowAutoTopicCreation as given
	// (sarama's default is on), so producing to a topic that does not exist
	// creates it on a broker with auto.create.topics.enable; set
	// Sarama.Metadata.AllowAutoTopicCreation = false to have such deliveries fail
	// instead.
	Sarama *sarama.Config
	// Logger receives the producer's diagnostics. Default: the logger of the
	// first processor that uses the producer (see Producer.Instrument), else
	// zap.NewNop().
	Logger *zap.Logger
	// Metrics receives producer.produce_status counts, tagged with status and
	// topic so that output and DLQ deliveries can be told apart. Default: the
	// metrics of the first processor that uses the producer, else metrics.Noop{}.
	Metrics metrics.Metrics
}

func (cfg ProducerConfig) build() (ProducerConfig, *sarama.Config, error) {
	if len(cfg.Brokers) == 0 {
		return cfg, nil, errors.New("kafka: ProducerConfig.Brokers is empty; give at least one host:port")
	}
	sc, err := saramaConfig(cfg.Sarama, "ProducerConfig")
	if err != nil {
		return cfg, nil, err
	}
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	if err := sc.Validate(); err != nil {
		return cfg, nil, fmt.Errorf("kafka: ProducerConfig.Sarama is invalid: %w", err)
	}
	return cfg, &sc, nil
}

// Producer writes messages asynchronously through sarama's AsyncProducer and
// resolves a processor.Delivery for each one with the position it was written to
// or the error. sarama reports the messages of one partition in the order they
// were written.
type Producer struct {
	ap sarama.AsyncProducer
	// inst is what the producer logs and records through.
	inst *instruments.Set

	// mu guards closed; sending counts Produce calls that may still hand a message
	// to sarama, which Close must wait for before it closes sarama's input.
	mu      sync.Mutex
	closed  bool
	sending sync.WaitGroup
	closing chan struct{}
	// resolved is closed when every delivery sarama reported has been resolved.
	resolved chan struct{}
}

var _ processor.Instrumented = (*Producer)(nil)

// NewProducer validates cfg and connects to the cluster.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	cfg, sc, err := cfg.build()
	if err != nil {
		return nil, err
	}
	ap, err := sarama.NewAsyncProducer(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka: connect producer to %v: %w", cfg.Brokers, err)
	}
	p := &Producer{
		ap:       ap,
		inst:     instruments.New(cfg.Logger, cfg.Metrics),
		closing:  make(chan struct{}),
		resolved: make(chan struct{}),
	}
	go p.resolve()
	return p, nil
}

// Instrument gives the producer the processor's logger and metrics where
// ProducerConfig left them unset. processor.New calls it through the pipeline that
// produces with it; when several processors share the producer, the first one's
// are used. It is safe to call while the producer is in use.
func (p *Producer) Instrument(inst processor.Instruments) {
	p.inst.Instrument(inst)
}

// Produce hands payload to sarama for topic and returns its pending delivery. It
// blocks only while sarama's input is full, and never past ctx: the delivery is
// then resolved with ctx's error.
func (p *Producer) Produce(ctx context.Context, topic string, payload processor.KafkaPayload) *processor.Delivery {
	d := processor.NewDelivery()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		d.Resolve(processor.Position{}, ErrProducerClosed)
		return d
	}
	p.sending.Add(1)
	p.mu.Unlock()
	defer p.sending.Done()

	msg := &sarama.ProducerMessage{Topic: topic, Metadata: d}
	// A nil key must stay nil: sarama hashes an empty key to a fixed partition
	// but spreads nil keys; a nil value is a tombstone.
	if payload.Key != nil {
		msg.Key = sarama.ByteEncoder(payload.Key)
	}
	if payload.Value != nil {
		msg.Value = sarama.ByteEncoder(payload.Value)
	}
	if len(payload.Headers) > 0 {
		msg.Headers = make([]sarama.RecordHeader, len(payload.Headers))
		for i, h := range payload.Headers {
			msg.Headers[i] = sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value}
		}
	}
	select {
	case p.ap.Input() <- msg:
	case <-ctx.Done():
		d.Resolve(processor.Position{}, fmt.Errorf("kafka: produce to %s: %w", topic, ctx.Err()))
	case <-p.closing:
		d.Resolve(processor.Position{}, ErrProducerClosed)
	}
	return d
}

// resolve turns sarama's reports into resolved deliveries until sarama has
// reported every message and closed its channels.
func (p *Producer) resolve() {
	defer close(p.resolved)
	succ, errs := p.ap.Successes(), p.ap.Errors()
	// inst is read per report, so that Instrument takes effect while the producer
	// runs.
	for succ != nil || errs != nil {
		select {
		case m, ok := <-succ:
			if !ok {
				succ = nil
				continue
			}
			pos := processor.Position{Partition: processor.Partition{Topic: m.Topic, Index: m.Partition}, Offset: m.Offset}
			m.Metadata.(*processor.Delivery).Resolve(pos, nil)
			p.inst.Load().Metrics.Increment("producer.produce_status", 1, metrics.Tag{Key: "status", Value: "success"}, metrics.Tag{Key: "topic", Value: m.Topic})
		case e, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			e.Msg.Metadata.(*processor.Delivery).Resolve(processor.Position{}, fmt.Errorf("kafka: produce to %s: %w", e.Msg.Topic, e.Err))
			inst := p.inst.Load()
			inst.Metrics.Increment("producer.produce_status", 1, metrics.Tag{Key: "status", Value: "error"}, metrics.Tag{Key: "topic", Value: e.Msg.Topic})
			inst.Logger.Warn("produce failed", zap.String("topic", e.Msg.Topic), zap.Error(e.Err))
		}
	}
}

// Close stops accepting messages and waits, within ctx, until every message
// handed to sarama has been written or has failed and its delivery is resolved.
// If ctx ends first, Close returns its error while sarama finishes in the
// background, bounded by its retry and network timeouts.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	first := !p.closed
	p.closed = true
	p.mu.Unlock()
	if first {
		close(p.closing)
		p.sending.Wait()
		p.ap.AsyncClose()
	}
	select {
	case <-p.resolved:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafka: close producer: outstanding messages not flushed: %w", ctx.Err())
	}
}

// ClientSettings returns a sarama configuration holding the client settings of sc
// (the network: TLS, SASL, timeouts; the client id, rack and protocol version; the
// metadata settings) and sarama's defaults for the rest, so that a producer made
// beside a consumer reaches the cluster the way the consumer does. A nil sc gives
// nil.
func ClientSettings(sc *sarama.Config) *sarama.Config {
	if sc == nil {
		return nil
	}
	out := sarama.NewConfig()
	out.Net = sc.Net
	out.ClientID = sc.ClientID
	out.RackID = sc.RackID
	out.Version = sc.Version
	out.Metadata = sc.Metadata
	return out
}
