// Command eos measures what exactly once costs: the same copy pipeline (input
// topic to output topic) at least once, with pipeline.Produce and plain commits,
// and in Kafka transactions, with franz.TxnConsumer and pipeline.Transact, each at
// the commit intervals given. For each contender and round it measures
//
//   - throughput: a fresh group copies a topic of -messages records produced
//     beforehand; the rate is the records divided by the time from the first
//     record the pipeline sees to the last output a read_committed reader sees;
//   - end-to-end latency: records are produced at -rate per second for -live;
//     each output's latency is the time from the input's write to the moment a
//     read_committed reader gets the output (p50, p99, max).
//
// The contenders run interleaved, -rounds times (A B C D A B C D ...), and the
// medians and ranges are printed as a Markdown table with the load average before
// and after. CPU seconds of the whole process are reported per contender too.
//
//	go run ./bench/eos -brokers 127.0.0.1:9092
//	go run ./bench/eos                        # in-process broker, for a smoke run
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
)

type config struct {
	brokers    []string
	messages   int
	partitions int
	size       int
	rounds     int
	intervals  []time.Duration
	rate       int
	live       time.Duration
	timeout    time.Duration
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "eos:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "eos:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("eos", flag.ContinueOnError)
	var cfg config
	brokers := fs.String("brokers", "", "bootstrap brokers, comma separated; empty starts an in-process broker")
	fs.IntVar(&cfg.messages, "messages", 100_000, "records in the throughput topic")
	fs.IntVar(&cfg.partitions, "partitions", 8, "partitions of the input topics")
	fs.IntVar(&cfg.size, "size", 100, "value size in bytes")
	fs.IntVar(&cfg.rounds, "rounds", 3, "interleaved rounds")
	intervals := fs.String("intervals", "100ms,1s", "commit intervals, comma separated")
	fs.IntVar(&cfg.rate, "rate", 5000, "records per second of the latency run")
	fs.DurationVar(&cfg.live, "live", 10*time.Second, "length of the latency run")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "bound of one contender's run")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if *brokers != "" {
		cfg.brokers = strings.Split(*brokers, ",")
	}
	for _, s := range strings.Split(*intervals, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("-intervals: %q is not a positive duration", s)
		}
		cfg.intervals = append(cfg.intervals, d)
	}
	if cfg.messages < 1 || cfg.partitions < 1 || cfg.size < 8 || cfg.rounds < 1 || cfg.rate < 1 || cfg.live <= 0 {
		return cfg, errors.New("-messages, -partitions, -rounds and -rate must be positive, -size at least 8 and -live positive")
	}
	return cfg, nil
}

// contender is one way of running the copy pipeline.
type contender struct {
	name     string
	txn      bool
	interval time.Duration
}

// result is one run of a contender.
type result struct {
	rate           float64 // records/s
	p50, p99, pmax time.Duration
	cpu            time.Duration
}

func run(ctx context.Context, cfg config, out, log io.Writer) error {
	if len(cfg.brokers) == 0 {
		c, err := kafkatest.Start()
		if err != nil {
			return err
		}
		defer c.Close()
		cfg.brokers = c.Addrs()
		fmt.Fprintln(log, "eos: in-process broker; pass -brokers for figures worth keeping")
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(cfg.brokers...))
	if err != nil {
		return err
	}
	defer adm.Close()
	b := &bench{cfg: cfg, cl: adm, adm: kadm.NewClient(adm), log: log}
	defer b.cleanup()

	input, err := b.topic(ctx, "in", int32(cfg.partitions))
	if err != nil {
		return err
	}
	if err := b.fill(ctx, input); err != nil {
		return err
	}
	var cs []contender
	for _, iv := range cfg.intervals {
		cs = append(cs, contender{name: "at least once", interval: iv}, contender{name: "transactions", txn: true, interval: iv})
	}
	loadBefore := loadavg()
	results := make([][]result, len(cs))
	for r := range cfg.rounds {
		for i, c := range cs {
			res, err := b.round(ctx, c, input)
			if err != nil {
				return fmt.Errorf("round %d, %s at %s: %w", r+1, c.name, c.interval, err)
			}
			fmt.Fprintf(log, "eos: round %d %-13s %-6s %8.0f records/s  p50 %-8s p99 %-8s max %-8s cpu %s\n",
				r+1, c.name, c.interval, res.rate, res.p50.Round(time.Millisecond), res.p99.Round(time.Millisecond), res.pmax.Round(time.Millisecond), res.cpu.Round(time.Millisecond))
			results[i] = append(results[i], res)
		}
	}
	report(out, cfg, cs, results, loadBefore, loadavg())
	return nil
}

type bench struct {
	cfg    config
	cl     *kgo.Client
	adm    *kadm.Client
	log    io.Writer
	topics []string
	seq    int
}

func (b *bench) name(kind string) string {
	b.seq++
	return fmt.Sprintf("creek-bench-eos-%s-%d-%d", kind, time.Now().UnixNano(), b.seq)
}

func (b *bench) topic(ctx context.Context, kind string, partitions int32) (string, error) {
	name := b.name(kind)
	resp, err := b.adm.CreateTopic(ctx, partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return "", fmt.Errorf("create topic %s: %w", name, err)
	}
	b.topics = append(b.topics, name)
	return name, nil
}

func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if len(b.topics) > 0 {
		if _, err := b.adm.DeleteTopics(ctx, b.topics...); err != nil {
			fmt.Fprintln(b.log, "eos: delete topics:", err)
		}
	}
}

// value returns a record value of the configured size that starts with now.
func (b *bench) value(now time.Time) []byte {
	v := make([]byte, b.cfg.size)
	binary.BigEndian.PutUint64(v, uint64(now.UnixNano()))
	return v
}

func (b *bench) fill(ctx context.Context, topic string) error {
	const batch = 5000
	for i := 0; i < b.cfg.messages; i += batch {
		recs := make([]*kgo.Record, 0, batch)
		for j := i; j < min(i+batch, b.cfg.messages); j++ {
			recs = append(recs, &kgo.Record{Topic: topic, Value: b.value(time.Now())})
		}
		if err := b.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("fill %s: %w", topic, err)
		}
	}
	return nil
}

// round measures c's throughput on input, then its latency on a live stream.
func (b *bench) round(ctx context.Context, c contender, input string) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.timeout)
	defer cancel()
	var res result
	cpu0 := cpuTime()
	out, err := b.topic(ctx, "out", int32(b.cfg.partitions))
	if err != nil {
		return res, err
	}
	var first atomic.Int64
	stop, err := b.start(c, input, out, &first)
	if err != nil {
		return res, err
	}
	_, last, err := b.read(ctx, out, b.cfg.messages)
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return res, err
	}
	res.rate = float64(b.cfg.messages) / last.Sub(time.Unix(0, first.Load())).Seconds()

	live, err := b.topic(ctx, "live", int32(b.cfg.partitions))
	if err != nil {
		return res, err
	}
	liveOut, err := b.topic(ctx, "liveout", int32(b.cfg.partitions))
	if err != nil {
		return res, err
	}
	stop, err = b.start(c, live, liveOut, &first)
	if err != nil {
		return res, err
	}
	// The stream starts once the pipeline has its partitions and has seen a
	// warm-up record, so that the latencies leave the group's join out.
	if err := b.cl.ProduceSync(ctx, &kgo.Record{Topic: live, Value: make([]byte, b.cfg.size)}).FirstErr(); err != nil {
		_ = stop()
		return res, err
	}
	for first.Load() == 0 {
		select {
		case <-ctx.Done():
			_ = stop()
			return res, fmt.Errorf("the pipeline did not see the warm-up record: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	n := int(b.cfg.live.Seconds() * float64(b.cfg.rate))
	produced := make(chan error, 1)
	go func() { produced <- b.produceLive(ctx, live, n) }()
	lat, _, err := b.read(ctx, liveOut, n+1)
	if perr := <-produced; err == nil {
		err = perr
	}
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return res, err
	}
	slices.Sort(lat)
	res.p50, res.p99, res.pmax = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	res.cpu = cpuTime() - cpu0
	return res, nil
}

// produceLive writes n records at the configured rate, in batches every 10 ms.
func (b *bench) produceLive(ctx context.Context, topic string, n int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for sent := 0; sent < n; {
		<-tick.C
		due := min(n, int(time.Since(start).Seconds()*float64(b.cfg.rate)))
		for ; sent < due; sent++ {
			b.cl.Produce(ctx, &kgo.Record{Topic: topic, Value: b.value(time.Now())}, nil)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return b.cl.Flush(ctx)
}

// start runs c's pipeline from in to out; first is set to the time the pipeline
// sees its first record.
func (b *bench) start(c contender, in, out string, first *atomic.Int64) (stop func() error, err error) {
	first.Store(0)
	group := b.name("group")
	cfg := franz.ConsumerConfig{
		Brokers: b.cfg.brokers, GroupID: group, InitialOffset: kafka.OffsetEarliest,
		HeartbeatInterval: 500 * time.Millisecond,
	}
	pcfg := processor.Config[processor.KafkaPayload]{Topics: []string{in}, CommitPolicy: processor.CommitPolicy{MinInterval: c.interval}}
	seen := pipeline.Map(pipeline.FromKafka(), func(_ context.Context, p processor.KafkaPayload) (processor.KafkaPayload, error) {
		if first.Load() == 0 {
			first.CompareAndSwap(0, time.Now().UnixNano())
		}
		return p, nil
	})
	var p *processor.StreamProcessor[processor.KafkaPayload]
	var closeProducer func() error
	if c.txn {
		tc, err := franz.NewTxnConsumer(cfg, franz.TxnConfig{TransactionalID: group})
		if err != nil {
			return nil, err
		}
		p, err = processor.New(tc, pipeline.Transact(seen, tc, out), pcfg)
		if err != nil {
			return nil, err
		}
	} else {
		pc, err := franz.NewConsumer(cfg)
		if err != nil {
			return nil, err
		}
		prod, err := franz.NewProducer(franz.ProducerConfig{Brokers: b.cfg.brokers})
		if err != nil {
			return nil, err
		}
		closeProducer = func() error { return prod.Close(context.Background()) }
		p, err = processor.New(pc, pipeline.Commit(pipeline.Produce(seen, prod, out)), pcfg)
		if err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return func() error {
		cancel()
		err := <-done
		if closeProducer != nil {
			err = errors.Join(err, closeProducer())
		}
		return err
	}, nil
}

// read reads n records of topic with read_committed isolation and returns each
// timed one's latency from the time in its value, and when the last one came.
func (b *bench) read(ctx context.Context, topic string, n int) ([]time.Duration, time.Time, error) {
	r, err := kgo.NewClient(kgo.SeedBrokers(b.cfg.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return nil, time.Time{}, err
	}
	defer r.Close()
	lat := make([]time.Duration, 0, n)
	var last time.Time
	for got := 0; got < n; {
		fs := r.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return lat, last, fmt.Errorf("read %s: %d of %d records: %w", topic, got, n, err)
		}
		if err := fs.Err0(); err != nil {
			return lat, last, err
		}
		now := time.Now()
		fs.EachRecord(func(rec *kgo.Record) {
			got++
			// A warm-up record carries no time.
			if at := int64(binary.BigEndian.Uint64(rec.Value)); at != 0 {
				lat = append(lat, now.Sub(time.Unix(0, at)))
			}
		})
		last = now
	}
	return lat, last, nil
}

func report(w io.Writer, cfg config, cs []contender, results [][]result, before, after string) {
	fmt.Fprintf(w, "%d records of %d bytes over %d partitions (throughput); %d records/s for %s (latency); %d interleaved rounds; medians [ranges]\n\n",
		cfg.messages, cfg.size, cfg.partitions, cfg.rate, cfg.live, cfg.rounds)
	fmt.Fprintln(w, "| commit interval | mode | throughput records/s | vs at least once | latency p50 | p99 | max | CPU s per round |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	var base float64
	for i, c := range cs {
		rs := results[i]
		rate := stat(rs, func(r result) float64 { return r.rate })
		if !c.txn {
			base = rate.med
		}
		ms := func(f func(result) time.Duration) string {
			s := stat(rs, func(r result) float64 { return float64(f(r)) / 1e6 })
			return fmt.Sprintf("%.0f ms [%.0f–%.0f]", s.med, s.lo, s.hi)
		}
		cpu := stat(rs, func(r result) float64 { return r.cpu.Seconds() })
		fmt.Fprintf(w, "| %s | %s | %.0f [%.0f–%.0f] | %.2f | %s | %s | %s | %.1f [%.1f–%.1f] |\n", c.interval, c.name, rate.med, rate.lo, rate.hi, rate.med/base,
			ms(func(r result) time.Duration { return r.p50 }), ms(func(r result) time.Duration { return r.p99 }), ms(func(r result) time.Duration { return r.pmax }),
			cpu.med, cpu.lo, cpu.hi)
	}
	fmt.Fprintf(w, "\nload average before: %s; after: %s\n", before, after)
}

type summary struct{ med, lo, hi float64 }

func stat(rs []result, f func(result) float64) summary {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return summary{med: v[len(v)/2], lo: v[0], hi: v[len(v)-1]}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
