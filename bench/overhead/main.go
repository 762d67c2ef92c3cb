// Command overhead measures what creek's StreamProcessor costs on top of bare sarama and franz-go loops.
//
// It produces one topic of small messages once, with a fast franz-go producer, and
// then lets the contenders consume all of it, each with a fresh consumer group:
//
//   - creek: a StreamProcessor running RunTask(identity) -> CommitOffsets through
//     kafka.NewConsumer (sarama), with the default commit policy;
//   - sarama: the bare consumer-group loop people usually write, MarkMessage with
//     auto-commit on;
//   - goka: a goka processor with one Input edge and a callback that does nothing;
//   - creek-franz: creek's chain through franz.NewConsumer (franz-go);
//   - franz: the bare franz-go loop, PollFetches with auto-commit on.
//
// The sarama-based three use the same sarama settings (protocol version, fetch
// sizes, channel buffer); the franz-go two use kgo's defaults. Each contender counts
// the messages it handled and stops when it has seen them all, so completion is
// detected by counting, never by a timer. The contenders run -rounds times,
// interleaved, and the medians and ranges are reported with their ratios to the
// bare sarama and the bare franz-go loops, as a Markdown table on stdout and as
// JSON, with the load average before and after.
//
//	go run ./bench/overhead                                  # in-process broker
//	go run ./bench/overhead -brokers 127.0.0.1:9092 -messages 1000000 -compression none
//
// The throughput is measured from the moment the contender's own code learns of
// its group assignment to the last message it handles. No client fetches before
// it has an assignment, so this counts all fetching, a client's prefetching
// before it hands out the first message included, and leaves out connecting and
// joining, which are fixed costs and reported apart (join s), as is the wall time
// from creating the client to the last message. The rate from the first message
// to the last is reported too, for comparison only: kgo fetches most of a small
// topic before the first record is counted, so for it that figure is not a
// consumption rate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/creekstream/creek/kafka/kafkatest"
)

// config is what the flags set.
type config struct {
	brokers    []string
	brokerName string
	messages   int
	partitions int
	size       int
	rounds     int
	// compression is how the producer writes the topic's batches: one of
	// compressionNames.
	compression string
	contenders  []string
	jsonPath    string
	cpuProfile  string
	runTimeout  time.Duration
	keepTopic   bool
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "overhead:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, errOut io.Writer) (config, error) {
	fs := flag.NewFlagSet("overhead", flag.ContinueOnError)
	fs.SetOutput(errOut)
	var cfg config
	brokers := fs.String("brokers", "", "Kafka bootstrap brokers, comma-separated host:port; empty starts an in-process broker (franz-go kfake)")
	fs.StringVar(&cfg.brokerName, "broker-name", "", "how to name the broker in the results (default: guessed from its API versions)")
	fs.IntVar(&cfg.messages, "messages", 1_000_000, "messages to produce and consume")
	fs.IntVar(&cfg.partitions, "partitions", 4, "partitions of the topic")
	fs.IntVar(&cfg.size, "size", 100, "bytes per message value")
	fs.StringVar(&cfg.compression, "compression", "snappy", "how the topic's batches are written: "+strings.Join(compressionNames(), ", "))
	fs.IntVar(&cfg.rounds, "rounds", 3, "runs per contender, interleaved; the median is reported")
	contenders := fs.String("contenders", strings.Join(contenderNames(), ","), "contenders to run, comma-separated")
	fs.StringVar(&cfg.jsonPath, "json", "bench/results/overhead.json", "where to write the results as JSON; empty writes none")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of every run to PREFIX-<contender>-<round>.prof")
	fs.DurationVar(&cfg.runTimeout, "run-timeout", 5*time.Minute, "give up on a run that has not consumed every message by then")
	fs.BoolVar(&cfg.keepTopic, "keep-topic", false, "leave the topic on the broker instead of deleting it")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q; every setting is a flag", fs.Args())
	}
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.brokers = append(cfg.brokers, b)
		}
	}
	for _, c := range strings.Split(*contenders, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cfg.contenders = append(cfg.contenders, c)
		}
	}
	return cfg, cfg.validate()
}

func (cfg config) validate() error {
	switch {
	case cfg.messages < 1:
		return fmt.Errorf("-messages is %d; give at least 1", cfg.messages)
	case cfg.partitions < 1:
		return fmt.Errorf("-partitions is %d; give at least 1", cfg.partitions)
	case cfg.size < 0:
		return fmt.Errorf("-size is %d; give 0 or more bytes", cfg.size)
	case cfg.rounds < 1:
		return fmt.Errorf("-rounds is %d; give at least 1", cfg.rounds)
	case cfg.runTimeout <= 0:
		return fmt.Errorf("-run-timeout is %v; give a positive duration", cfg.runTimeout)
	case !slices.Contains(compressionNames(), cfg.compression):
		return fmt.Errorf("-compression: %q is unknown; use one of %v", cfg.compression, compressionNames())
	case len(cfg.contenders) == 0:
		return fmt.Errorf("-contenders is empty; name some of %v", contenderNames())
	}
	for _, name := range cfg.contenders {
		if _, ok := contenderByName(name); !ok {
			return fmt.Errorf("-contenders: %q is unknown; use some of %v", name, contenderNames())
		}
	}
	return nil
}

// run sets the broker and the topic up, runs the rounds and reports.
func run(ctx context.Context, cfg config, out, log io.Writer) error {
	brokers := cfg.brokers
	if len(brokers) == 0 {
		cluster, err := kafkatest.Start(kafkatest.WithPartitions(int32(cfg.partitions)))
		if err != nil {
			return err
		}
		defer cluster.Close()
		brokers = cluster.Addrs()
		cfg.brokers = brokers
		if cfg.brokerName == "" {
			cfg.brokerName = "in-process franz-go kfake"
		}
	}
	admin, err := kafkatest.NewClient(brokers)
	if err != nil {
		return err
	}
	defer admin.Close()

	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := admin.Ping(setupCtx); err != nil {
		return err
	}
	if cfg.brokerName == "" {
		cfg.brokerName = guessBroker(setupCtx, brokers)
	}
	topic := uniqueName("creek-bench-overhead")
	if err := admin.CreateTopic(setupCtx, topic, int32(cfg.partitions)); err != nil {
		return err
	}
	if !cfg.keepTopic {
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := admin.DeleteTopic(ctx, topic); err != nil {
				fmt.Fprintln(log, "overhead:", err)
			}
		}()
	}
	fmt.Fprintf(log, "producing %d messages of %d bytes to %s (%d partitions, %s) on %v\n", cfg.messages, cfg.size, topic, cfg.partitions, cfg.compression, brokers)
	produced, err := produce(ctx, brokers, topic, cfg.partitions, cfg.messages, cfg.size, cfg.compression)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "produced in %v (%.0f messages/s)\n", produced.Round(time.Millisecond), float64(cfg.messages)/produced.Seconds())

	b := bench{cfg: cfg, brokers: brokers, topic: topic, admin: admin, log: log}
	_, loadBefore, _ := loadAverage()
	results, err := b.rounds(ctx)
	if err != nil {
		return err
	}
	_, loadAfter, _ := loadAverage()
	rep := newReport(cfg, results)
	rep.Load.Before, rep.Load.After = loadBefore, loadAfter
	rep.Topic.ProduceSeconds = produced.Seconds()
	if err := rep.writeMarkdown(out); err != nil {
		return err
	}
	if cfg.jsonPath != "" {
		if err := rep.writeJSON(cfg.jsonPath); err != nil {
			return err
		}
		fmt.Fprintf(log, "results written to %s\n", cfg.jsonPath)
	}
	return nil
}
