// Command spanbuffer runs the span buffer: spans in, whole segments out.
//
// With no flags it needs nothing installed: it starts an in-process Kafka broker and
// an in-process Redis, generates a stream of spans (many traces with nested segments,
// shuffled so that children often arrive before their parents, and a few invalid
// spans), runs the ready-made span buffer consumer on it, prints progress once a
// second, and finally checks that every valid span came out in the segment the
// generator expects and every invalid one reached the dead-letter topic. It exits
// with status 1 if not.
//
// With -listen it also serves the consumer's metrics in the Prometheus text format at
// /metrics and its health at /healthz, and -linger keeps it running after the check,
// for a look at the endpoints or a dashboard.
//
//	go run ./examples/spanbuffer
//	go run ./examples/spanbuffer -brokers 127.0.0.1:9092 -redis 127.0.0.1:6379 -traces 20000 -rate 20000
//	go run ./examples/spanbuffer -listen 127.0.0.1:9464 -linger 5m
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments"
	"github.com/creekstream/creek/segments/store"
)

func main() {
	var o options
	flag.StringVar(&o.brokers, "brokers", "", "Kafka bootstrap broker host:port; empty starts an in-process broker")
	flag.StringVar(&o.redis, "redis", "", "Redis host:port; empty starts an in-process Redis")
	flag.IntVar(&o.traces, "traces", 2000, "number of traces to generate")
	flag.IntVar(&o.rate, "rate", 5000, "spans produced per second")
	flag.IntVar(&o.invalid, "invalid", 10, "number of invalid spans mixed in")
	flag.IntVar(&o.workers, "workers", 0, "flusher workers (0: one per partition)")
	flag.IntVar(&o.partitions, "partitions", 4, "partitions of the input topic")
	flag.StringVar(&o.backend, "backend", string(segments.Franz), "Kafka client of the consumer: franz or sarama")
	flag.DurationVar(&o.rootTimeout, "root-timeout", time.Second, "quiet time before a segment with its root is flushed")
	flag.DurationVar(&o.timeout, "segment-timeout", 3*time.Second, "quiet time before a segment without its root is flushed")
	flag.DurationVar(&o.deadline, "deadline", 90*time.Second, "give up if not every span is out by then")
	listen := flag.String("listen", "", "serve /metrics and /healthz on this host:port, e.g. 127.0.0.1:9464; empty serves nothing")
	flag.DurationVar(&o.linger, "linger", 0, "after the check, keep the consumer (and -listen) running this long; an interrupt ends it early")
	flag.Parse()

	logger, err := zap.NewDevelopment(zap.IncreaseLevel(zap.WarnLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, "spanbuffer:", err)
		os.Exit(1)
	}
	var ln net.Listener
	if *listen != "" {
		if ln, err = net.Listen("tcp", *listen); err != nil {
			fmt.Fprintln(os.Stderr, "spanbuffer: -listen:", err)
			os.Exit(1)
		}
	}
	ctx, stop := processor.SignalContext(context.Background())
	err = run(ctx, o, ln, os.Stdout, logger)
	stop()
	_ = logger.Sync()
	if err != nil {
		fmt.Fprintln(os.Stderr, "spanbuffer:", err)
		os.Exit(1)
	}
}

type options struct {
	brokers, redis, backend string
	traces, rate, invalid   int
	workers, partitions     int
	rootTimeout, timeout    time.Duration
	deadline, linger        time.Duration
}

const (
	inputTopic  = "spans"
	outputTopic = "segments"
	dlqTopic    = "spans-dlq"
)

// run generates the stream, runs the consumer until every span is accounted for
// (or ctx or the deadline ends), checks the output, and keeps the consumer running
// for o.linger more. With ln it serves /metrics and /healthz on ln from the start
// until it returns, and closes ln.
func run(ctx context.Context, o options, ln net.Listener, out io.Writer, log *zap.Logger) (err error) {
	if o.traces < 1 || o.rate < 1 || o.partitions < 1 || o.invalid < 0 || o.linger < 0 {
		if ln != nil {
			_ = ln.Close()
		}
		return errors.New("-traces, -rate and -partitions must be at least 1, -invalid and -linger at least 0")
	}
	// ingested counts spans for the progress lines and passes every metric on.
	ingested := &spanCounter{next: metrics.Noop{}}
	health := &health{now: time.Now}
	if ln != nil {
		// Its own registry, with the Go and process collectors, served by Handler.
		backend, perr := metrics.NewPrometheus(metrics.PrometheusConfig{Logger: log})
		if perr != nil {
			_ = ln.Close()
			return perr
		}
		ingested.next = backend
		stop := serve(ln, backend, health, log)
		defer func() { err = errors.Join(err, stop()) }()
		fmt.Fprintf(out, "serving http://%s/metrics and http://%s/healthz\n", ln.Addr(), ln.Addr())
	}
	// The deadline bounds the check, not the lingering after it.
	checkCtx, cancel := context.WithTimeout(ctx, o.deadline)
	defer cancel()

	brokers := []string{o.brokers}
	if o.brokers == "" {
		cluster, err := kafkatest.Start(kafkatest.WithPartitions(int32(o.partitions)), kafkatest.WithTopics(inputTopic, outputTopic, dlqTopic))
		if err != nil {
			return err
		}
		defer cluster.Close()
		brokers = cluster.Addrs()
		fmt.Fprintf(out, "started in-process Kafka at %v\n", brokers)
	}
	redisAddr := o.redis
	if redisAddr == "" {
		mini, err := miniredis.Run()
		if err != nil {
			return fmt.Errorf("start in-process Redis: %w", err)
		}
		defer mini.Close()
		redisAddr = mini.Addr()
		fmt.Fprintf(out, "started in-process Redis at %s\n", redisAddr)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer func() { _ = rdb.Close() }()

	admin, err := kafkatest.NewClient(brokers)
	if err != nil {
		return err
	}
	defer admin.Close()
	// Topics get fresh names on a real broker so that earlier runs do not count.
	suffix := ""
	if o.brokers != "" {
		suffix = fmt.Sprintf("-%d", time.Now().UnixNano())
		for _, t := range []string{inputTopic, outputTopic, dlqTopic} {
			n := int32(1)
			if t == inputTopic {
				n = int32(o.partitions)
			}
			if err := admin.CreateTopic(checkCtx, t+suffix, n); err != nil {
				return err
			}
		}
	}
	in, segTopic, dlq := inputTopic+suffix, outputTopic+suffix, dlqTopic+suffix

	gen := generate(o.traces, o.invalid, o.partitions)
	fmt.Fprintf(out, "generated %d traces: %d valid spans in %d segments, %d invalid spans\n",
		o.traces, len(gen.expected), gen.segments, len(gen.invalid))

	consumer, err := segments.NewConsumer(segments.ConsumerConfig{
		Brokers: brokers, Group: "spanbuffer" + suffix,
		Backend:    segments.Backend(o.backend),
		InputTopic: in, OutputTopic: segTopic, DLQTopic: dlq,
		Redis:     rdb,
		Buffer:    store.Config{RootTimeout: o.rootTimeout, Timeout: o.timeout},
		Flusher:   segments.FlusherConfig{Workers: o.workers, IdleInterval: 100 * time.Millisecond},
		BatchTime: 50 * time.Millisecond,
		Logger:    log,
		Metrics:   ingested,
	})
	if err != nil {
		return err
	}
	health.consumer.Store(consumer)
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() {
		err := consumer.Run(runCtx)
		health.stopped.Store(true)
		runErr <- err
	}()

	reader, err := newReader(brokers, segTopic, dlq)
	if err != nil {
		stopRun()
		return errors.Join(err, <-runErr)
	}
	defer reader.close()

	produced := new(atomic.Int64)
	prodErr := make(chan error, 1)
	go func() { prodErr <- produce(runCtx, admin, in, gen.records, o.rate, produced) }()

	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var failure error
	for !reader.complete(gen) && failure == nil {
		select {
		case <-tick.C:
			s := reader.stats()
			el := time.Since(start).Seconds()
			fmt.Fprintf(out, "%5.1fs  spans produced %6d  ingested %6d  segments out %6d (%6d spans, %.0f spans/s)  DLQ %d\n",
				el, produced.Load(), ingested.Load(), s.segments, s.spans, float64(s.spans)/el, s.dlq)
		case err := <-prodErr:
			if err != nil {
				failure = fmt.Errorf("producing spans: %w", err)
			}
			prodErr = nil
		case err := <-runErr:
			failure = fmt.Errorf("consumer stopped: %w", err)
			runErr = nil
		case <-checkCtx.Done():
			failure = fmt.Errorf("not every span came out within %v: %w", o.deadline, checkCtx.Err())
		case <-reader.changed:
		}
	}
	elapsed := time.Since(start)
	checked := report(out, gen, reader, elapsed)
	if o.linger > 0 && runErr != nil && ctx.Err() == nil {
		fmt.Fprintf(out, "lingering for %v with the consumer running; interrupt to stop\n", o.linger)
		linger := time.NewTimer(o.linger)
		select {
		case <-linger.C:
		case <-ctx.Done():
		case err := <-runErr:
			failure = errors.Join(failure, fmt.Errorf("consumer stopped: %w", err))
			runErr = nil
		}
		linger.Stop()
	}
	stopRun()
	if runErr != nil {
		if err := <-runErr; err != nil && failure == nil {
			failure = fmt.Errorf("consumer: %w", err)
		}
	}
	return errors.Join(failure, checked)
}

// spanCounter counts ingested spans for the progress lines and passes every metric
// on to next.
type spanCounter struct {
	atomic.Int64
	next metrics.Metrics
}

func (c *spanCounter) Increment(name string, v int64, tags ...metrics.Tag) {
	if name == "spans.buffer.process_spans.count" {
		c.Add(v)
	}
	c.next.Increment(name, v, tags...)
}
func (c *spanCounter) Gauge(name string, v float64, tags ...metrics.Tag) {
	c.next.Gauge(name, v, tags...)
}
func (c *spanCounter) Timing(name string, d time.Duration, tags ...metrics.Tag) {
	c.next.Timing(name, d, tags...)
}

// produce writes records at about rate per second, in slices of a tenth of a second.
func produce(ctx context.Context, c *kafkatest.Client, topic string, records []*kgo.Record, rate int, produced *atomic.Int64) error {
	step := max(rate/10, 1)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < len(records); {
		// A trace is never split over two slices, so its spans arrive together.
		end := min(i+step, len(records))
		for end < len(records) && records[end].Key != nil && string(records[end].Key) == string(records[end-1].Key) {
			end++
		}
		batch := records[i:end]
		i = end
		for _, r := range batch {
			r.Topic = topic
			r.Timestamp = time.Now()
		}
		if err := c.Produce(ctx, batch...); err != nil {
			return err
		}
		produced.Add(int64(len(batch)))
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// report prints the summary and returns an error if a span is missing, came out in
// a segment other than its own (even once) or an invalid span was not dead-lettered.
// A misplaced span is listed with its partition, its Kafka time and when each
// segment it came out in was produced, which is what tells a flush that came too
// early from a span that arrived too late.
func report(out io.Writer, gen generated, r *reader, elapsed time.Duration) error {
	s := r.stats()
	missing, wrong, dupes, bad := r.check(gen)
	deadMissing := 0
	for v := range gen.invalid {
		if !r.deadLettered(v) {
			deadMissing++
		}
	}
	fmt.Fprintf(out, "summary: %d valid spans generated in %d segments; %d spans came out in %d segment messages in %s (%.0f spans/s); duplicates %d; DLQ %d of %d invalid\n",
		len(gen.expected), gen.segments, s.spans, s.segments, elapsed.Round(time.Millisecond), float64(s.spans)/elapsed.Seconds(), dupes, len(gen.invalid)-deadMissing, len(gen.invalid))
	if len(missing) == 0 && len(wrong) == 0 && bad == 0 && deadMissing == 0 {
		fmt.Fprintf(out, "check: OK: every one of the %d valid spans was delivered in its own segment, and all %d invalid spans reached the DLQ\n",
			len(gen.expected), len(gen.invalid))
		return nil
	}
	const show = 10
	for _, m := range wrong[:min(len(wrong), show)] {
		rec := gen.record[m.span]
		fmt.Fprintf(out, "  span %s (partition %d, Kafka time %s) belongs to segment %s but came out in:",
			m.span, rec.Partition, rec.Timestamp.Format("15:04:05.000"), m.want)
		for _, e := range m.got {
			fmt.Fprintf(out, " %s (produced %s)", e.segment, e.at.Format("15:04:05.000"))
		}
		fmt.Fprintln(out)
	}
	for _, id := range missing[:min(len(missing), show)] {
		rec := gen.record[id]
		fmt.Fprintf(out, "  span %s (partition %d, Kafka time %s) of segment %s never came out\n",
			id, rec.Partition, rec.Timestamp.Format("15:04:05.000"), gen.expected[id])
	}
	fmt.Fprintf(out, "check: FAILED: %d spans missing, %d in a wrong segment, %d output messages not segments, %d invalid spans not in the DLQ\n",
		len(missing), len(wrong), bad, deadMissing)
	return errors.New("output check failed")
}

// decodeSegment returns each span id of a segment message with its segment id.
func decodeSegment(v []byte) (map[string]string, error) {
	var msg struct {
		Spans []struct {
			SpanID     string `json:"span_id"`
			Attributes map[string]struct {
				Value string `json:"value"`
			} `json:"attributes"`
		} `json:"spans"`
	}
	if err := json.Unmarshal(v, &msg); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(msg.Spans))
	for _, s := range msg.Spans {
		out[s.SpanID] = s.Attributes["sentry.segment.id"].Value
	}
	return out, nil
}
