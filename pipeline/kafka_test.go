package pipeline_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
)

// kafkaWait bounds every wait on the broker.
const kafkaWait = 60 * time.Second

// kafkaProducer is what the tests need of either backend's producer.
type kafkaProducer interface {
	Produce(ctx context.Context, topic string, payload processor.KafkaPayload) *processor.Delivery
	Close(ctx context.Context) error
}

// backend makes a consumer and a producer of one Kafka backend, neither given a
// logger, the producer given metrics m if not nil.
type backend struct {
	name string
	make func(t *testing.T, env *kafkatest.Env, group string, m metrics.Metrics) (processor.Consumer[processor.KafkaPayload], kafkaProducer)
}

var backends = []backend{
	{"sarama", func(t *testing.T, env *kafkatest.Env, group string, m metrics.Metrics) (processor.Consumer[processor.KafkaPayload], kafkaProducer) {
		c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: env.Brokers, GroupID: group, Sarama: kafkatest.SaramaConfig()})
		if err != nil {
			t.Fatal(err)
		}
		p, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: env.Brokers, Sarama: kafkatest.SaramaConfig(), Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		return c, p
	}},
	{"franz", func(t *testing.T, env *kafkatest.Env, group string, m metrics.Metrics) (processor.Consumer[processor.KafkaPayload], kafkaProducer) {
		c, err := franz.NewConsumer(franz.ConsumerConfig{Brokers: env.Brokers, GroupID: group, HeartbeatInterval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		p, err := franz.NewProducer(franz.ProducerConfig{Brokers: env.Brokers, Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		return c, p
	}},
}

// TestTheKafkaConsumerAndProducerTakeTheProcessorsInstruments runs a pipeline on
// the in-process broker with the logger and metrics given to the processor only,
// and finds the consumer's logs and the producer's metrics there; a producer given
// metrics of its own keeps them.
func TestTheKafkaConsumerAndProducerTakeTheProcessorsInstruments(t *testing.T) {
	for _, b := range backends {
		for _, ownMetrics := range []bool{false, true} {
			name := b.name + "/processor's metrics"
			if ownMetrics {
				name = b.name + "/producer's own metrics"
			}
			t.Run(name, func(t *testing.T) {
				env := kafkatest.New(t)
				in, out, group := env.Topic(1), env.Topic(1), env.Group()
				env.Fill(in, 1, 3, func(_ int32, i int) string { return string(rune('a' + i)) })

				procRec, ownRec := metricstest.NewRecorder(), metricstest.NewRecorder()
				var given metrics.Metrics
				if ownMetrics {
					given = ownRec
				}
				consumer, producer := b.make(t, env, group, given)
				defer func() {
					if err := producer.Close(env.Context(kafkaWait)); err != nil {
						t.Errorf("close producer: %v", err)
					}
				}()
				shout := func(_ context.Context, p processor.KafkaPayload) (processor.KafkaPayload, error) {
					return processor.KafkaPayload{Value: bytes.ToUpper(p.Value)}, nil
				}
				factory := pipeline.Commit(pipeline.Produce(pipeline.Map(pipeline.FromKafka(), shout), producer, out))
				core, logs := observer.New(zap.InfoLevel)
				p, err := processor.New(consumer, factory, processor.Config[processor.KafkaPayload]{
					Topics: []string{in}, Logger: zap.New(core), Metrics: procRec, CommitPolicy: processor.ImmediateCommit(),
				})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- p.Run(ctx) }()

				delivered := []metrics.Tag{{Key: "status", Value: "success"}, {Key: "topic", Value: out}}
				want, other := procRec, ownRec
				if ownMetrics {
					want, other = ownRec, procRec
				}
				werr := want.WaitCounter(env.Context(kafkaWait), "producer.produce_status", 3, delivered...)
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
				if werr != nil {
					t.Fatal(werr)
				}
				if n := other.Counter("producer.produce_status", delivered...); n != 0 {
					t.Errorf("the other recorder counted %d deliveries, want none", n)
				}
				if n := logs.FilterMessage("partitions assigned").FilterField(zap.String("group", group)).Len(); n == 0 {
					t.Errorf("the consumer's own log of the assignment did not reach the processor's logger; logs: %v", logs.All())
				}
			})
		}
	}
}
