package main

import (
	"context"
	"log"
	"strings"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

func main() {
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers: []string{"127.0.0.1:9092"},
		GroupID: "shouter",
	})
	if err != nil {
		log.Fatal(err)
	}

	// Upper-case every value, drop empty ones, commit what was processed.
	factory := processor.FactoryFunc[processor.KafkaPayload](
		func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[processor.KafkaPayload], error) {
			commitStep := strategies.NewCommitOffsets[string](commit)
			shout := strategies.NewRunTask(func(_ context.Context, m processor.Message[processor.KafkaPayload]) (string, error) {
				return strings.ToUpper(string(m.Payload.Value)), nil
			}, commitStep)
			return strategies.NewFilter(func(_ context.Context, m processor.Message[processor.KafkaPayload]) bool {
				return len(m.Payload.Value) > 0
			}, shout), nil
		})

	p, err := processor.New(consumer, factory, processor.Config[processor.KafkaPayload]{
		Topics: []string{"words"},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := processor.SignalContext(context.Background())
	defer stop()
	if err := p.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
