// Command chaos-consumer is the consumer process of the chaos suite: a
// StreamProcessor on one of creek's Kafka backends that appends every message it
// processes to a file before its offset can be committed, so that the suite can
// count, after kill -9, churn or a broker outage, what was lost and what was done
// twice.
//
// Each line of the -out file is "partition offset value unixnano", written with one
// write(2) per message: what the kernel has accepted survives kill -9 of the process.
// The process exits 0 after a clean shutdown on SIGTERM and 1, with the error on
// stderr, if the processor fails.
//
//	chaos-consumer -backend franz -brokers 127.0.0.1:9092 -topic in -group g -out /tmp/out.log
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/chaos/internal/member"
	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

type options struct {
	backend, brokers, topic, group, assignor, out string
	commitInterval, session                       time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.backend, "backend", "sarama", "Kafka backend: sarama (package kafka) or franz (package kafka/franz)")
	flag.StringVar(&o.brokers, "brokers", "", "bootstrap broker host:port")
	flag.StringVar(&o.topic, "topic", "", "input topic")
	flag.StringVar(&o.group, "group", "", "consumer group")
	flag.StringVar(&o.assignor, "assignor", "range", "partition assignor: range or cooperative-sticky")
	flag.StringVar(&o.out, "out", "", "file every processed message is appended to")
	flag.DurationVar(&o.commitInterval, "commit-interval", 500*time.Millisecond, "CommitPolicy.MinInterval")
	flag.DurationVar(&o.session, "session-timeout", 6*time.Second, "group session timeout")
	flag.Parse()

	member.Main("chaos-consumer", func(ctx context.Context, log *zap.Logger) error { return run(ctx, o, log) })
}

func run(ctx context.Context, o options, log *zap.Logger) error {
	if o.brokers == "" || o.topic == "" || o.group == "" || o.out == "" {
		return errors.New("chaos-consumer: -brokers, -topic, -group and -out are required")
	}
	f, err := os.OpenFile(o.out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("chaos-consumer: %w", err)
	}
	defer f.Close()

	consumer, err := newConsumer(o, log)
	if err != nil {
		return err
	}
	factory := processor.FactoryFunc[processor.KafkaPayload](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[processor.KafkaPayload], error) {
		// RunTask calls record on the processor's loop goroutine, one message at a
		// time, so f has one writer; CommitOffsets stages the offset only after the
		// line is written.
		record := func(_ context.Context, m processor.Message[processor.KafkaPayload]) (processor.KafkaPayload, error) {
			pos, ok := m.Origin()
			if !ok {
				return m.Payload, nil
			}
			line := make([]byte, 0, 64)
			line = strconv.AppendInt(line, int64(pos.Partition.Index), 10)
			line = append(line, ' ')
			line = strconv.AppendInt(line, pos.Offset, 10)
			line = append(line, ' ')
			line = append(line, m.Payload.Value...)
			line = append(line, ' ')
			line = strconv.AppendInt(line, time.Now().UnixNano(), 10)
			line = append(line, '\n')
			if _, err := f.Write(line); err != nil {
				return m.Payload, fmt.Errorf("chaos-consumer: record %v: %w", pos, err)
			}
			return m.Payload, nil
		}
		return strategies.NewRunTask(record, strategies.NewCommitOffsets[processor.KafkaPayload](commit)), nil
	})
	p, err := processor.New[processor.KafkaPayload](consumer, factory, processor.Config[processor.KafkaPayload]{
		Topics:       []string{o.topic},
		CommitPolicy: processor.CommitPolicy{MinInterval: o.commitInterval},
		PollTimeout:  100 * time.Millisecond,
		JoinTimeout:  5 * time.Second,
		Logger:       log.Named("processor"),
	})
	if err != nil {
		_ = consumer.Close()
		return err
	}
	return p.Run(ctx)
}

// newConsumer returns the consumer of o.backend with group timings short enough
// for a killed member's partitions to move within seconds.
func newConsumer(o options, log *zap.Logger) (processor.Consumer[processor.KafkaPayload], error) {
	brokers := []string{o.brokers}
	switch o.backend {
	case "sarama":
		return kafka.NewConsumer(kafka.ConsumerConfig{
			Brokers: brokers, GroupID: o.group, Assignor: o.assignor,
			InitialOffset: kafka.OffsetEarliest, Sarama: member.Sarama(o.session), Logger: log.Named("consumer"),
		})
	case "franz":
		cfg := member.Franz(o.session, 200*time.Millisecond)
		cfg.Brokers, cfg.GroupID, cfg.Assignor, cfg.Logger = brokers, o.group, o.assignor, log.Named("consumer")
		return franz.NewConsumer(cfg)
	}
	return nil, fmt.Errorf("chaos-consumer: unknown -backend %q; want sarama or franz", o.backend)
}
