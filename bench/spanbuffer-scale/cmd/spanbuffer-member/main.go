// Command spanbuffer-member is one member of the scale-out benchmark's consumer
// group (package bench/spanbuffer-scale): the ready-made span buffer consumer
// (segments.NewConsumer, franz-go backend) reading spans from one topic, assembling
// segments on a Redis Cluster and flushing them to another topic.
//
// It tells the benchmark how far it got on stdout, one line at a time:
//
//	progress <spans acknowledged> <spans ingested>
//	rebalance assigned
//	rebalance revoked
//
// A progress line is written at most every 20 ms, and only when a count changed,
// so that the reports cost the member next to nothing; a last one is written on
// exit. The counts are cumulative: spans whose segments Kafka acknowledged
// (spans.buffer.flusher.segment_spans) and spans written to Redis
// (spans.buffer.process_spans.count). A rebalance line follows each of the
// processor's "partitions assigned" and "partitions revoked" logs, so the benchmark
// can tell whether the group changed while it measured. Logs go to stderr.
//
// It exits 0 after a clean shutdown on SIGTERM or SIGINT and 1, with the error on
// stderr, if the consumer fails.
//
//	spanbuffer-member -brokers 127.0.0.1:9092 -cluster 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002 \
//		-group g -in spans -out-topic segments
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments"
	"github.com/creekstream/creek/segments/store"
)

// options are the command line's settings.
type options struct {
	brokers, cluster   []string
	group, in, out     string
	rootTimeout        time.Duration
	timeout            time.Duration
	idle, batchTime    time.Duration
	batchSize, workers int
}

// parseOptions reads the command line args (without the program name).
func parseOptions(args []string) (options, error) {
	var o options
	var brokers, cluster string
	fs := flag.NewFlagSet("spanbuffer-member", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the caller prints the error once
	fs.StringVar(&brokers, "brokers", "", "bootstrap brokers, host:port,...")
	fs.StringVar(&cluster, "cluster", "", "Redis Cluster nodes, host:port,...")
	fs.StringVar(&o.group, "group", "", "consumer group")
	fs.StringVar(&o.in, "in", "", "input topic of spans")
	fs.StringVar(&o.out, "out-topic", "", "output topic of segments")
	fs.DurationVar(&o.rootTimeout, "root-timeout", 200*time.Millisecond, "quiet time before a segment with its root is flushed")
	fs.DurationVar(&o.timeout, "segment-timeout", 5*time.Second, "quiet time before a segment without its root is flushed")
	fs.DurationVar(&o.idle, "idle-interval", 50*time.Millisecond, "flusher workers' pause when they find nothing due")
	fs.DurationVar(&o.batchTime, "batch-time", 50*time.Millisecond, "longest wait to fill a batch")
	fs.IntVar(&o.batchSize, "batch-size", 1000, "spans per batch")
	fs.IntVar(&o.workers, "workers", 0, "flusher workers (0: one per assigned partition)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.brokers, o.cluster = list(brokers), list(cluster)
	switch {
	case len(o.brokers) == 0 || len(o.cluster) == 0 || o.group == "" || o.in == "" || o.out == "":
		return options{}, errors.New("-brokers, -cluster, -group, -in and -out-topic are required")
	case o.rootTimeout <= 0 || o.timeout <= 0 || o.idle <= 0 || o.batchTime <= 0:
		return options{}, errors.New("-root-timeout, -segment-timeout, -idle-interval and -batch-time must be > 0")
	case o.batchSize <= 0 || o.workers < 0:
		return options{}, errors.New("-batch-size must be > 0 and -workers >= 0")
	}
	return o, nil
}

// list splits a comma-separated list, dropping blanks.
func list(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "spanbuffer-member: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := processor.SignalContext(context.Background())
	err = run(ctx, o, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "spanbuffer-member: exiting: %v\n", err)
		os.Exit(1)
	}
}

// run consumes until ctx is done, reporting to w.
func run(ctx context.Context, o options, w io.Writer) error {
	rep := newReporter(w)
	logger, err := zap.NewProduction(zap.Hooks(rep.hook))
	if err != nil {
		return fmt.Errorf("logger: %w", err)
	}
	defer func() { _ = logger.Sync() }()

	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: o.cluster})
	defer func() { _ = rdb.Close() }()
	c, err := segments.NewConsumerContext(ctx, segments.ConsumerConfig{
		Brokers: o.brokers, Group: o.group, InputTopic: o.in, OutputTopic: o.out,
		Redis:     rdb,
		Buffer:    store.Config{RootTimeout: o.rootTimeout, Timeout: o.timeout},
		Flusher:   segments.FlusherConfig{IdleInterval: o.idle, Workers: o.workers},
		BatchSize: o.batchSize, BatchTime: o.batchTime,
		Logger:  logger,
		Metrics: rep,
	})
	if err != nil {
		return fmt.Errorf("new consumer: %w", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	repCtx, stopRep := context.WithCancel(context.Background())
	repDone := make(chan error, 1)
	go func() {
		err := rep.run(repCtx, 20*time.Millisecond)
		if err != nil {
			cancel() // nobody hears this member any more: stop it
		}
		repDone <- err
	}()
	runErr := c.Run(runCtx)
	// The reporter outlives the consumer, so its last line holds every count.
	stopRep()
	return errors.Join(runErr, <-repDone)
}

// reporter is the consumer's metrics backend and log hook: it keeps the counts the
// benchmark reads and writes them to w. mu guards the counts, the rebalance lines
// waiting to be written and w.
type reporter struct {
	mu              sync.Mutex
	w               *bufio.Writer
	acked, ingested int64
	written         [2]int64 // the counts of the last progress line
	rebalances      []string
	changed         chan struct{}
	writeErr        error
}

func newReporter(w io.Writer) *reporter {
	return &reporter{w: bufio.NewWriter(w), changed: make(chan struct{}, 1), written: [2]int64{-1, -1}}
}

// Increment counts the two figures the benchmark needs and ignores the rest.
func (r *reporter) Increment(name string, v int64, _ ...metrics.Tag) {
	r.mu.Lock()
	switch name {
	case "spans.buffer.flusher.segment_spans":
		r.acked += v
	case "spans.buffer.process_spans.count":
		r.ingested += v
	default:
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.signal()
}

func (*reporter) Gauge(string, float64, ...metrics.Tag)        {}
func (*reporter) Timing(string, time.Duration, ...metrics.Tag) {}

// hook turns the processor's assignment logs into rebalance lines.
func (r *reporter) hook(e zapcore.Entry) error {
	var what string
	switch e.Message {
	case "processor: partitions assigned":
		what = "assigned"
	case "processor: partitions revoked":
		what = "revoked"
	default:
		return nil
	}
	r.mu.Lock()
	r.rebalances = append(r.rebalances, what)
	r.mu.Unlock()
	r.signal()
	return nil
}

func (r *reporter) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// run writes what changed, at most once per every, until ctx is done, and then a
// last time. It returns the first write error.
func (r *reporter) run(ctx context.Context, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return r.flush()
		case <-r.changed:
		}
		if err := r.flush(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return r.flush()
		case <-tick.C:
		}
	}
}

// flush writes the rebalance lines waiting and a progress line if a count changed.
func (r *reporter) flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.writeErr != nil {
		return r.writeErr
	}
	for _, what := range r.rebalances {
		fmt.Fprintf(r.w, "rebalance %s\n", what)
	}
	r.rebalances = r.rebalances[:0]
	if now := [2]int64{r.acked, r.ingested}; now != r.written {
		fmt.Fprintf(r.w, "progress %d %d\n", now[0], now[1])
		r.written = now
	}
	if err := r.w.Flush(); err != nil {
		r.writeErr = fmt.Errorf("writing the report: %w", err)
	}
	return r.writeErr
}
