package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
)

// runMember is the child: a StreamProcessor on backend that prints "consumed <p>"
// the first time it handles a message of each partition, until SIGINT or SIGTERM.
func runMember(brokers []string, backend, group, instance, topic string, session time.Duration) error {
	var consumer processor.Consumer[processor.KafkaPayload]
	var err error
	switch backend {
	case "sarama":
		sc := kafkatest.SaramaConfig()
		sc.Consumer.Group.Session.Timeout = session
		sc.Consumer.Group.Heartbeat.Interval = session / 10
		consumer, err = kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, GroupID: group, InstanceID: instance, Sarama: sc})
	case "franz":
		consumer, err = franz.NewConsumer(franz.ConsumerConfig{Brokers: brokers, GroupID: group, InstanceID: instance,
			SessionTimeout: session, HeartbeatInterval: session / 10})
	default:
		err = fmt.Errorf("unknown backend %q; use sarama or franz", backend)
	}
	if err != nil {
		return err
	}
	var mu sync.Mutex
	seen := map[int32]bool{}
	step := pipeline.MapMessage(pipeline.FromKafka(), func(_ context.Context, m processor.Message[processor.KafkaPayload]) (processor.KafkaPayload, error) {
		if pos, ok := m.Origin(); ok {
			mu.Lock()
			if !seen[pos.Partition.Index] {
				seen[pos.Partition.Index] = true
				fmt.Fprintf(os.Stdout, "consumed %d\n", pos.Partition.Index)
			}
			mu.Unlock()
		}
		return m.Payload, nil
	})
	p, err := processor.New(consumer, pipeline.Commit(step), processor.Config[processor.KafkaPayload]{Topics: []string{topic}})
	if err != nil {
		return err
	}
	ctx, stop := processor.SignalContext(context.Background())
	defer stop()
	return p.Run(ctx)
}
