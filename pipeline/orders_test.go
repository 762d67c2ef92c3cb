package pipeline_test

// A draft of examples/orders: an order service that parses JSON orders, sends
// invalid ones to a dead-letter topic, enriches the others with 2 ms of I/O at
// concurrency 16, writes them out in batches of 100, commits, and serves
// Prometheus /metrics and /healthz. runOrders and the functions above it are the
// service; Example_orders is its main.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

type Order struct {
	ID       string  `json:"id"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
}

type Enriched struct {
	Order
	Region string `json:"region"`
}

func parseOrder(_ context.Context, p processor.KafkaPayload) (Order, error) {
	var o Order
	if err := json.Unmarshal(p.Value, &o); err != nil {
		return o, pipeline.Invalid(err)
	}
	return o, nil
}

// enrich stands for a lookup in another service.
func enrich(ctx context.Context, o Order) (Enriched, error) {
	select {
	case <-time.After(2 * time.Millisecond):
		return Enriched{Order: o, Region: "eu-" + o.Customer}, nil
	case <-ctx.Done():
		return Enriched{}, ctx.Err()
	}
}

func encodeBatch(_ context.Context, batch []Enriched) (processor.KafkaPayload, error) {
	v, err := json.Marshal(batch)
	return processor.KafkaPayload{Value: v}, err
}

func runOrders(ctx context.Context, brokers []string, ln net.Listener, logger *zap.Logger) error {
	reg := prometheus.NewRegistry()
	m, err := metrics.NewPrometheus(metrics.PrometheusConfig{Registerer: reg})
	if err != nil {
		return err
	}
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, GroupID: "orders"})
	if err != nil {
		return err
	}
	producer, err := kafka.NewProducer(kafka.ProducerConfig{Brokers: brokers})
	if err != nil {
		return err
	}
	defer producer.Close(context.Background())
	live, err := strategies.NewLiveness(strategies.LivenessConfig{})
	if err != nil {
		return err
	}

	orders := pipeline.Map(pipeline.FromKafka(), parseOrder)
	enriched := pipeline.MapConcurrent(orders, enrich, 16)
	batches := pipeline.Map(pipeline.Batch(enriched, 100, time.Second), encodeBatch)
	out := pipeline.Healthcheck(pipeline.Produce(batches, producer, "orders-enriched"), live)
	p, err := processor.New(consumer, pipeline.Commit(out), processor.Config[processor.KafkaPayload]{
		Topics: []string{"orders"}, Logger: logger, Metrics: m,
		DLQ: &processor.DLQPolicy[processor.KafkaPayload]{Producer: kafka.NewDLQProducer(producer, "orders-dlq")},
	})
	if err != nil {
		return err
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", live.Handler())
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	return p.Run(ctx)
}

func Example_orders() {
	logger, _ := zap.NewProduction()
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := processor.SignalContext(context.Background())
	defer stop()
	if err := runOrders(ctx, strings.Split("127.0.0.1:9092", ","), ln, logger); err != nil {
		log.Fatal(err)
	}
}

// TestOrderService runs the draft end to end on the in-process broker.
func TestOrderService(t *testing.T) {
	cluster, err := kafkatest.Start(kafkatest.WithPartitions(2), kafkatest.WithTopics("orders", "orders-enriched", "orders-dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	client, err := kafkatest.NewClient(cluster.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), kafkaWait)
	defer cancel()

	const valid, invalid = 250, 3
	var recs []*kgo.Record
	for i := range valid {
		v, _ := json.Marshal(Order{ID: strconv.Itoa(i), Customer: "c" + strconv.Itoa(i%5), Amount: float64(i)})
		recs = append(recs, &kgo.Record{Topic: "orders", Partition: int32(i % 2), Value: v})
		if i%80 == 40 {
			recs = append(recs, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte("{not json")})
		}
	}
	if err := client.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runOrders(runCtx, cluster.Addrs(), ln, zap.NewNop()) }()

	// Batches of at most 100, so at least three; read until every order is out.
	seen := map[string]bool{}
	for n, total := 3, 0; total < valid; n++ {
		out, err := client.Read(ctx, "orders-enriched", n)
		if err != nil {
			t.Fatalf("%v; %d orders out", err, total)
		}
		clear(seen)
		total = 0
		for _, r := range out {
			var batch []Enriched
			if err := json.Unmarshal(r.Value, &batch); err != nil {
				t.Fatal(err)
			}
			if len(batch) > 100 {
				t.Errorf("a batch of %d orders, want at most 100", len(batch))
			}
			for _, e := range batch {
				if !strings.HasPrefix(e.Region, "eu-c") {
					t.Errorf("order %s was not enriched: %+v", e.ID, e)
				}
				seen[e.ID] = true
			}
			total += len(batch)
		}
	}
	if len(seen) != valid {
		t.Errorf("%d distinct orders came out, want %d", len(seen), valid)
	}
	dlq, err := client.Read(ctx, "orders-dlq", invalid)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range dlq {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if string(r.Value) != "{not json" || h[kafka.HeaderOriginalTopic] != "orders" || h[kafka.HeaderOriginalOffset] == "" || h[kafka.HeaderReason] == "" {
			t.Errorf("dead letter %q with headers %v: want the original with its origin and reason", r.Value, h)
		}
	}

	base := "http://" + ln.Addr().String()
	for path, want := range map[string]string{
		"/metrics": "creek_producer_produce_status",
		"/healthz": "",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body without %q:\n%s", path, resp.StatusCode, want, body)
		}
	}
	if resp, err := http.Get(base + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, name := range []string{"creek_strategies_reduce_batch_time", "creek_consumer_latency"} {
			if !strings.Contains(string(body), name) {
				t.Errorf("/metrics has no %s", name)
			}
		}
	}

	// The signal's part: cancelling Run commits what was processed.
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("runOrders: %v", err)
	}
	committed, err := client.CommittedOffsets(ctx, "orders", "orders")
	if err != nil {
		t.Fatal(err)
	}
	end, err := client.EndOffsets(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	for p, o := range end {
		if committed[p] != o {
			t.Errorf("partition %d: committed %d, want the end offset %d", p, committed[p], o)
		}
	}
}
