// Command chaos-spanbuffer is the span buffer process of the chaos suite: the
// ready-made span buffer consumer (segments.NewConsumer) reading spans from one
// topic and flushing whole segments to another, through a real Redis. The suite
// kill -9s it mid-flush and reads the segment topic back.
//
// It exits 0 after a clean shutdown on SIGTERM and 1, with the error on stderr, if
// the consumer fails.
//
//	chaos-spanbuffer -brokers 127.0.0.1:9092 -redis 127.0.0.1:6379 -group g -in spans -out-topic segments
package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/creekstream/creek/chaos/internal/member"
	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/segments"
	"github.com/creekstream/creek/segments/store"
)

type options struct {
	brokers, redis, group, in, outTopic, backend string
	rootTimeout, timeout, session                time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.brokers, "brokers", "", "bootstrap broker host:port")
	flag.StringVar(&o.redis, "redis", "", "Redis host:port")
	flag.StringVar(&o.group, "group", "", "consumer group")
	flag.StringVar(&o.in, "in", "", "input topic of spans")
	flag.StringVar(&o.outTopic, "out-topic", "", "output topic of segments")
	flag.DurationVar(&o.rootTimeout, "root-timeout", time.Second, "quiet time before a segment with its root is flushed")
	flag.DurationVar(&o.timeout, "segment-timeout", 3*time.Second, "quiet time before a segment without its root is flushed")
	flag.DurationVar(&o.session, "session-timeout", 6*time.Second, "group session timeout")
	flag.StringVar(&o.backend, "backend", string(segments.Franz), "Kafka client: franz or sarama")
	flag.Parse()

	member.Main("chaos-spanbuffer", func(ctx context.Context, log *zap.Logger) error { return run(ctx, o, log) })
}

func run(ctx context.Context, o options, log *zap.Logger) error {
	if o.brokers == "" || o.redis == "" || o.group == "" || o.in == "" || o.outTopic == "" {
		return errors.New("chaos-spanbuffer: -brokers, -redis, -group, -in and -out-topic are required")
	}
	rdb := redis.NewClient(&redis.Options{Addr: o.redis})
	defer func() { _ = rdb.Close() }()
	cfg := segments.ConsumerConfig{
		Brokers: []string{o.brokers}, Group: o.group,
		InputTopic: o.in, OutputTopic: o.outTopic,
		Redis:     rdb,
		Buffer:    store.Config{RootTimeout: o.rootTimeout, Timeout: o.timeout},
		Flusher:   segments.FlusherConfig{IdleInterval: 100 * time.Millisecond},
		BatchTime: 50 * time.Millisecond,
		Backend:   segments.Backend(o.backend),
		Logger:    log,
	}
	if cfg.Backend == segments.Sarama {
		cfg.Kafka = kafka.ConsumerConfig{InitialOffset: kafka.OffsetEarliest, Sarama: member.Sarama(o.session)}
	} else {
		cfg.Franz = member.Franz(o.session, 100*time.Millisecond)
	}
	c, err := segments.NewConsumer(cfg)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}
