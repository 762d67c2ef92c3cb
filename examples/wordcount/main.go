// Command wordcount counts words with keyed state on an in-process Kafka broker,
// crashes its counter halfway, and checks that every count comes out exact.
//
// A splitter processor reads lines, splits them into words and produces each word
// keyed by itself to a words topic, so that each word always lands on one
// partition. A counter processor counts the words with state.Count: its stores are
// LevelDB directories, its changelog a compacted topic. The first counter fails
// after -crash-after words without committing the last of them, as a killed process
// would; the second one restores the stores from the changelog, is handed the
// uncommitted words again, and skips those already counted. At the end the program
// reads the counts back from the changelog and compares them with the text.
//
//	go run ./examples/wordcount
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/state"
	"github.com/creekstream/creek/strategies"
)

const (
	linesTopic = "lines"
	wordsTopic = "words"
	changelog  = "wordcount-counts-changelog"
	partitions = 3
)

// options are the command line's.
type options struct {
	lines      int
	crashAfter int
	timeout    time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.lines, "lines", 2000, "lines of text to count the words of")
	flag.IntVar(&o.crashAfter, "crash-after", 3000, "words the first counter counts before it crashes; 0 for no crash")
	flag.DurationVar(&o.timeout, "timeout", time.Minute, "give up after this long")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

var vocabulary = strings.Fields(`the quick brown fox jumps over the lazy dog while a stream of
	records flows through kafka and every word is counted once and only once even when
	the counter crashes`)

// text returns n lines made of the vocabulary, the same every run.
func text(n int) []string {
	lines := make([]string, n)
	for i := range lines {
		words := make([]string, 3+i%5)
		for j := range words {
			words[j] = vocabulary[(i*7+j*13)%len(vocabulary)]
		}
		lines[i] = strings.Join(words, " ")
	}
	return lines
}

func run(o options, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cluster, err := kafkatest.Start(kafkatest.WithPartitions(partitions), kafkatest.WithTopics(linesTopic, wordsTopic))
	if err != nil {
		return err
	}
	defer cluster.Close()
	brokers := cluster.Addrs()
	client, err := kafkatest.NewClient(brokers)
	if err != nil {
		return err
	}
	defer client.Close()

	lines := text(o.lines)
	want := map[string]int64{}
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		for _, w := range strings.Fields(l) {
			want[w]++
		}
		recs[i] = &kgo.Record{Topic: linesTopic, Partition: int32(i % partitions), Value: []byte(l)}
	}
	if err := client.Produce(ctx, recs...); err != nil {
		return err
	}
	total := int64(0)
	for _, n := range want {
		total += n
	}
	fmt.Fprintf(out, "produced %d lines: %d words, %d distinct\n", len(lines), total, len(want))

	if err := split(ctx, brokers, client); err != nil {
		return err
	}

	cl, err := state.NewKafkaChangelog(changelog, kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Create(ctx, partitions, 1); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "wordcount-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := state.Config[int64]{Name: "word-counts", Changelog: cl, Dir: dir}

	var stats counterStats
	if o.crashAfter > 0 {
		err := count(ctx, brokers, client, cfg, o.crashAfter, &stats)
		if !errors.Is(err, errCrash) {
			return fmt.Errorf("the first counter should have crashed: %v", err)
		}
		fmt.Fprintf(out, "counter 1 crashed after %d counted words had gone through, with the last of them uncommitted\n", stats.counted.Load())
	}
	before := stats.counted.Load()
	if err := count(ctx, brokers, client, cfg, 0, &stats); err != nil {
		return err
	}
	fmt.Fprintf(out, "counter 2 restored the stores from the changelog, took %d words, skipped %d already counted\n",
		stats.counted.Load()-before, stats.replayed.Load())

	got, err := readCounts(ctx, cl)
	if err != nil {
		return err
	}
	words := make([]string, 0, len(got))
	for w := range got {
		words = append(words, w)
	}
	slices.SortFunc(words, func(a, b string) int {
		if got[a] != got[b] {
			return int(got[b] - got[a])
		}
		return strings.Compare(a, b)
	})
	fmt.Fprintln(out, "top words:")
	for _, w := range words[:min(10, len(words))] {
		fmt.Fprintf(out, "  %-10s %6d\n", w, got[w])
	}
	var wrong []string
	for w, n := range want {
		if got[w] != n {
			wrong = append(wrong, fmt.Sprintf("%s counted %d, in the text %d", w, got[w], n))
		}
	}
	if len(got) != len(want) || len(wrong) > 0 {
		slices.Sort(wrong)
		fmt.Fprintf(out, "check: FAILED: %d distinct words counted, %d in the text; %s\n", len(got), len(want), strings.Join(wrong, "; "))
		return errors.New("wordcount: the counts do not match the text")
	}
	fmt.Fprintf(out, "check: OK: all %d words of the text counted exactly once, %d distinct\n", total, len(want))
	return nil
}

// split runs the splitter until every line is committed.
func split(ctx context.Context, brokers []string, client *kafkatest.Client) error {
	consumer, err := franz.NewConsumer(franz.ConsumerConfig{Brokers: brokers, GroupID: "wordcount-splitter", HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	producer, err := franz.NewProducer(franz.ProducerConfig{Brokers: brokers})
	if err != nil {
		return err
	}
	defer producer.Close(context.Background())
	// Each word is keyed by itself: the producer's partitioner sends every copy of
	// a word to one partition, where its count lives.
	words := pipeline.FlatMap(pipeline.FromKafka(), func(_ context.Context, p processor.KafkaPayload) ([]processor.KafkaPayload, error) {
		var out []processor.KafkaPayload
		for _, w := range strings.Fields(string(p.Value)) {
			out = append(out, processor.KafkaPayload{Key: []byte(w), Value: []byte(w)})
		}
		return out, nil
	})
	p, err := processor.New(consumer, pipeline.Commit(pipeline.Produce(words, producer, wordsTopic)), processor.Config[processor.KafkaPayload]{Topics: []string{linesTopic}})
	if err != nil {
		return err
	}
	return runUntilCommitted(ctx, p, client, "wordcount-splitter", linesTopic)
}

// errCrash is how the first counter stops: an error ends a run without a commit.
var errCrash = errors.New("wordcount: counter crashed")

type counterStats struct{ counted, replayed atomic.Int64 }

// count runs a counter until every word is committed, or, with crashAfter, until it
// has counted that many words, when it fails.
func count(ctx context.Context, brokers []string, client *kafkatest.Client, cfg state.Config[int64], crashAfter int, stats *counterStats) error {
	consumer, err := franz.NewConsumer(franz.ConsumerConfig{Brokers: brokers, GroupID: "wordcount-counter", HeartbeatInterval: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	counts := state.Count(pipeline.FromKafka(), cfg, state.KafkaKey)
	taken := 0
	checked := pipeline.Through(counts, func(next processor.Strategy[state.Change[processor.KafkaPayload, int64]], _ []strategies.Option) (processor.Strategy[state.Change[processor.KafkaPayload, int64]], error) {
		return crashing{next: next, stats: stats, crash: func() bool {
			taken++
			return crashAfter > 0 && taken > crashAfter
		}}, nil
	})
	p, err := processor.New(consumer, pipeline.Commit(checked), processor.Config[processor.KafkaPayload]{
		Topics: []string{wordsTopic},
		// Commits far apart leave many counted words uncommitted at the crash.
		CommitPolicy: processor.CommitPolicy{MinMessages: 1000, MinInterval: time.Second},
	})
	if err != nil {
		return err
	}
	return runUntilCommitted(ctx, p, client, "wordcount-counter", wordsTopic)
}

// crashing passes changes on, counting them, and fails when crash says so.
type crashing struct {
	next  processor.Strategy[state.Change[processor.KafkaPayload, int64]]
	stats *counterStats
	crash func() bool
}

func (c crashing) Submit(m processor.Message[state.Change[processor.KafkaPayload, int64]]) error {
	if !m.Filtered() && c.crash() {
		return errCrash
	}
	if err := c.next.Submit(m); err != nil {
		return err
	}
	if m.Payload.Replayed {
		c.stats.replayed.Add(1)
	} else if !m.Filtered() {
		c.stats.counted.Add(1)
	}
	return nil
}
func (c crashing) Poll() error                    { return c.next.Poll() }
func (c crashing) Close()                         {}
func (c crashing) Join(ctx context.Context) error { c.next.Close(); return c.next.Join(ctx) }
func (c crashing) Terminate()                     { c.next.Terminate() }

// runUntilCommitted runs p until group has committed the end of every partition of
// topic, then stops it, or until it fails.
func runUntilCommitted(ctx context.Context, p *processor.StreamProcessor[processor.KafkaPayload], client *kafkatest.Client, group, topic string) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	ends, err := client.EndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return fmt.Errorf("wordcount: %s did not commit all of %s in time: %w", group, topic, ctx.Err())
		case <-tick.C:
		}
		committed, err := client.CommittedOffsets(ctx, group, topic)
		if err != nil {
			return err
		}
		all := true
		for part, end := range ends {
			all = all && committed[part] >= end
		}
		if all {
			stop()
			return <-done
		}
	}
}

// readCounts reads the last count of every word from the changelog.
func readCounts(ctx context.Context, cl *state.KafkaChangelog) (map[string]int64, error) {
	got := map[string]int64{}
	for part := range int32(partitions) {
		_, err := cl.Restore(ctx, part, 0, func(r state.Record) error {
			n, err := state.Int64{}.Decode(r.Value)
			got[string(r.Key)] = n
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return got, nil
}
