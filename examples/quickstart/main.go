package main

import (
	"context"
	"log"
	"strings"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
)

func main() {
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers: []string{"127.0.0.1:9092"},
		GroupID: "shouter",
	})
	if err != nil {
		log.Fatal(err)
	}

	// Drop empty values, upper-case the others, commit what was processed.
	words := pipeline.Filter(pipeline.FromKafka(), func(_ context.Context, p processor.KafkaPayload) bool {
		return len(p.Value) > 0
	})
	shouted := pipeline.Map(words, func(_ context.Context, p processor.KafkaPayload) (string, error) {
		return strings.ToUpper(string(p.Value)), nil
	})

	p, err := processor.New(consumer, pipeline.Commit(shouted), processor.Config[processor.KafkaPayload]{
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
