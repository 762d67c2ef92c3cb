// Command orders is an order service built on creek: it reads JSON orders, sends
// the ones it cannot parse to a dead-letter topic, enriches the others with a call
// to another service (16 at a time), writes them out in batches of 100, commits what
// it wrote, and serves /metrics and /healthz. This file is the service; main.go runs
// it, on an in-process broker with sample orders unless -brokers is given.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// Order is what the orders topic carries; Region is filled in by enrich.
type Order struct {
	ID       string  `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
	Region   string  `json:"region,omitempty"`
}

func parseOrder(_ context.Context, p processor.KafkaPayload) (o Order, err error) {
	if err = json.Unmarshal(p.Value, &o); err != nil {
		err = pipeline.Invalid(err) // to the dead-letter topic
	}
	return o, err
}

// enrich stands for a 2 ms call to a customer service.
func enrich(ctx context.Context, o Order) (Order, error) {
	select {
	case <-time.After(2 * time.Millisecond):
		o.Region = "eu-" + o.Customer
		return o, nil
	case <-ctx.Done():
		return o, ctx.Err()
	}
}

func encode(_ context.Context, batch []Order) (processor.KafkaPayload, error) {
	v, err := json.Marshal(batch)
	return processor.KafkaPayload{Value: v}, err
}

// serve runs the service until ctx is cancelled, then commits what it wrote.
func serve(ctx context.Context, brokers []string, ln net.Listener, logger *zap.Logger) error {
	m, err1 := metrics.NewPrometheus(metrics.PrometheusConfig{})
	live, err2 := strategies.NewLiveness(strategies.LivenessConfig{})
	consumer, err3 := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, GroupID: "orders"})
	producer, err4 := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return err // a real service exits here, which releases what was made
	}
	defer producer.Close(context.Background())

	orders := pipeline.Map(pipeline.FromKafka(), parseOrder)
	enriched := pipeline.MapConcurrent(orders, enrich, 16)
	batches := pipeline.Map(pipeline.Batch(enriched, 100, time.Second), encode)
	out := pipeline.Healthcheck(pipeline.Produce(batches, producer, "orders-enriched"), live)
	p, err := processor.New(consumer, pipeline.Commit(out), processor.Config[processor.KafkaPayload]{
		Topics: []string{"orders"}, Logger: logger, Metrics: m,
		DLQ: &processor.DLQPolicy[processor.KafkaPayload]{Producer: kafka.NewDLQProducer(producer, "orders-dlq")},
	})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.Handle("/healthz", live.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	return p.Run(ctx)
}
