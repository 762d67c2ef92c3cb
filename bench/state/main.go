// Command state compares a keyed count with package state against a goka processor
// with Persist doing the same count, and measures the restore of a large store.
//
// It produces one topic of keyed messages once. Each round runs both contenders,
// interleaved, each with a fresh group, a fresh table topic and a fresh LevelDB
// directory, until it has counted every message:
//
//   - creek: a StreamProcessor on franz.NewConsumer running state.Count (LevelDB
//     stores, a compacted changelog written by franz-go) and CommitOffsets; a
//     message is counted once its change is acknowledged by the changelog;
//   - goka: a goka processor whose Input callback reads the key's count and sets it
//     one higher (goka.Persist with codec.Int64, LevelDB storage); a message is
//     counted when its callback returns, before goka's table write is acknowledged.
//
// It reports messages/s (wall, from start to the last message counted, joining
// included) and the process's CPU seconds per run, as medians and ranges over the
// rounds, with the load average. Then it writes a changelog partition of -restore-keys
// keys and times the restore of a store from it: into an empty LevelDB store, into
// a memory store, and of the LevelDB store again from its local copy; and it prints
// the LevelDB directory's size and the heap the memory store holds.
//
//	go run ./bench/state -brokers 127.0.0.1:9092
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/state"
	"github.com/creekstream/creek/strategies"
)

type config struct {
	brokers                    []string
	messages, keys, partitions int
	rounds, restoreKeys        int
	timeout                    time.Duration
}

func main() {
	var c config
	var brokers string
	flag.StringVar(&brokers, "brokers", "", "Kafka brokers; empty runs an in-process broker")
	flag.IntVar(&c.messages, "messages", 200000, "keyed messages to count")
	flag.IntVar(&c.keys, "keys", 10000, "distinct keys")
	flag.IntVar(&c.partitions, "partitions", 4, "partitions of the input topic")
	flag.IntVar(&c.rounds, "rounds", 3, "interleaved rounds")
	flag.IntVar(&c.restoreKeys, "restore-keys", 1000000, "keys of the store whose restore is timed; 0 skips it")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	if brokers == "" {
		cluster, err := kafkatest.Start()
		if err != nil {
			log.Fatal(err)
		}
		defer cluster.Close()
		c.brokers = cluster.Addrs()
		fmt.Println("in-process broker: CPU seconds include the broker's")
	} else {
		c.brokers = strings.Split(brokers, ",")
	}
	if err := run(c, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// sample is one run of a contender.
type sample struct{ wall, cpu time.Duration }

func run(c config, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	topic := "bench-state-in-" + suffix
	if _, err := adm.CreateTopic(ctx, int32(c.partitions), 1, nil, topic); err != nil {
		return err
	}
	defer adm.DeleteTopics(context.Background(), topic)
	if err := produce(ctx, cl, topic, c); err != nil {
		return err
	}
	fmt.Fprintf(out, "topic: %d messages over %d keys in %d partitions\n", c.messages, c.keys, c.partitions)

	contenders := []struct {
		name string
		run  func(ctx context.Context, c config, topic, name, dir string) error
	}{{"creek", runCreek}, {"goka", runGoka}}
	samples := map[string][]sample{}
	load0 := loadavg()
	for r := range c.rounds {
		for _, ct := range contenders {
			dir, err := os.MkdirTemp("", "bench-state-")
			if err != nil {
				return err
			}
			name := fmt.Sprintf("bench-state-%s-%s-%d", ct.name, suffix, r)
			cpu0, start := cpuTime(), time.Now()
			err = ct.run(ctx, c, topic, name, dir)
			s := sample{wall: time.Since(start), cpu: cpuTime() - cpu0}
			os.RemoveAll(dir)
			_, _ = adm.DeleteTopics(context.Background(), name+"-changelog", name+"-table")
			if err != nil {
				return fmt.Errorf("%s round %d: %w", ct.name, r, err)
			}
			samples[ct.name] = append(samples[ct.name], s)
			fmt.Fprintf(out, "round %d %-5s %6.2fs wall %6.2fs CPU %8.0f msg/s\n", r+1, ct.name, s.wall.Seconds(), s.cpu.Seconds(), float64(c.messages)/s.wall.Seconds())
		}
	}
	fmt.Fprintf(out, "load average before %s, after %s\n\n", load0, loadavg())
	fmt.Fprintln(out, "| contender | msg/s (median) | range | CPU s (median) | range | vs goka msg/s |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|")
	gokaRate := float64(c.messages) / median(samples["goka"], wallOf).Seconds()
	for _, ct := range contenders {
		ss := samples[ct.name]
		rate := float64(c.messages) / median(ss, wallOf).Seconds()
		lo, hi := float64(c.messages)/maxOf(ss, wallOf).Seconds(), float64(c.messages)/minOf(ss, wallOf).Seconds()
		fmt.Fprintf(out, "| %s | %.0f | %.0f-%.0f | %.2f | %.2f-%.2f | %.2f |\n", ct.name, rate, lo, hi,
			median(ss, cpuOf).Seconds(), minOf(ss, cpuOf).Seconds(), maxOf(ss, cpuOf).Seconds(), rate/gokaRate)
	}
	if c.restoreKeys > 0 {
		return restore(ctx, c, adm, cl, "bench-state-restore-"+suffix, out)
	}
	return nil
}

func produce(ctx context.Context, cl *kgo.Client, topic string, c config) error {
	const batch = 10000
	for i := 0; i < c.messages; i += batch {
		recs := make([]*kgo.Record, 0, batch)
		for id := i; id < min(i+batch, c.messages); id++ {
			k := id * 7919 % c.keys
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(k % c.partitions), Key: []byte("key-" + strconv.Itoa(k)), Value: []byte("v")})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return err
		}
	}
	return nil
}

// counter counts the messages a contender handled and says when it has them all.
type counter struct {
	n, want atomic.Int64
	done    chan struct{}
}

func newCounter(want int) *counter {
	c := &counter{done: make(chan struct{})}
	c.want.Store(int64(want))
	return c
}

func (c *counter) add() {
	if c.n.Add(1) == c.want.Load() {
		close(c.done)
	}
}

func runUntilCounted(ctx context.Context, cnt *counter, run func(context.Context) error) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ended := make(chan error, 1)
	go func() { ended <- run(runCtx) }()
	select {
	case <-cnt.done:
		stop()
		return <-ended
	case err := <-ended:
		if err == nil {
			err = fmt.Errorf("ended after %d messages", cnt.n.Load())
		}
		return err
	}
}

func runCreek(ctx context.Context, c config, topic, name, dir string) error {
	changelog, err := state.NewKafkaChangelog(name+"-changelog", kgo.SeedBrokers(c.brokers...))
	if err != nil {
		return err
	}
	defer changelog.Close()
	if err := changelog.Create(ctx, int32(c.partitions), 1); err != nil {
		return err
	}
	consumer, err := franz.NewConsumer(franz.ConsumerConfig{Brokers: c.brokers, GroupID: name})
	if err != nil {
		return err
	}
	cnt := newCounter(c.messages)
	counts := state.Count(pipeline.FromKafka(), state.Config[int64]{Name: "counts", Changelog: changelog, Dir: dir}, state.KafkaKey)
	counted := pipeline.Through(counts, func(next processor.Strategy[state.Change[processor.KafkaPayload, int64]], opts []strategies.Option) (processor.Strategy[state.Change[processor.KafkaPayload, int64]], error) {
		return strategies.NewRunTask(func(_ context.Context, m processor.Message[state.Change[processor.KafkaPayload, int64]]) (state.Change[processor.KafkaPayload, int64], error) {
			cnt.add()
			return m.Payload, nil
		}, next, opts...), nil
	})
	p, err := processor.New(consumer, pipeline.Commit(counted), processor.Config[processor.KafkaPayload]{Topics: []string{topic}})
	if err != nil {
		return err
	}
	return runUntilCounted(ctx, cnt, p.Run)
}

func runGoka(ctx context.Context, c config, topic, name, dir string) error {
	cfg := func() *sarama.Config {
		sc := goka.DefaultConfig()
		sc.Version = sarama.V2_8_0_0
		sc.Consumer.Offsets.Initial = sarama.OffsetOldest
		return sc
	}
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication, tmc.Stream.Replication = 1, 1
	cnt := newCounter(c.messages)
	graph := goka.DefineGroup(goka.Group(name),
		goka.Input(goka.Stream(topic), new(codec.Bytes), func(gctx goka.Context, _ any) {
			n := int64(0)
			if v := gctx.Value(); v != nil {
				n = v.(int64)
			}
			gctx.SetValue(n + 1)
			cnt.add()
		}),
		goka.Persist(new(codec.Int64)),
	)
	p, err := goka.NewProcessor(c.brokers, graph,
		goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(cfg())),
		goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(cfg())),
		goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(cfg())),
		goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(cfg(), tmc)),
		goka.WithStorageBuilder(storage.DefaultBuilder(dir)),
		goka.WithLogger(log.New(io.Discard, "", 0)),
	)
	if err != nil {
		return err
	}
	return runUntilCounted(ctx, cnt, p.Run)
}

// restore writes a changelog partition of c.restoreKeys keys and times restores of
// a store from it.
func restore(ctx context.Context, c config, adm *kadm.Client, cl *kgo.Client, topic string, out io.Writer) error {
	changelog, err := state.NewKafkaChangelog(topic, kgo.SeedBrokers(c.brokers...))
	if err != nil {
		return err
	}
	defer changelog.Close()
	if err := changelog.Create(ctx, 1, 1); err != nil {
		return err
	}
	defer adm.DeleteTopics(context.Background(), topic)
	val, _ := state.Int64{}.Encode(1)
	const batch = 10000
	for i := 0; i < c.restoreKeys; i += batch {
		recs := make([]*kgo.Record, 0, batch)
		for k := i; k < min(i+batch, c.restoreKeys); k++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Key: []byte("key-" + strconv.Itoa(k)), Value: val,
				Headers: []kgo.RecordHeader{{Key: "creek.applied", Value: strconv.AppendInt(nil, int64(k), 10)}}})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "bench-state-restore-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(out, "\nrestore of a store of %d keys (one changelog partition), load %s\n", c.restoreKeys, loadavg())
	leveldb := state.Config[int64]{Name: "restore", Changelog: changelog, Codec: state.Int64{}, Dir: dir}
	d, heap, err := timeRestore(leveldb, int64(c.restoreKeys))
	if err != nil {
		return err
	}
	size, err := dirSize(dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  LevelDB, empty store:    %6.2fs (%.0f keys/s); directory %.1f MiB, heap held %.1f MiB\n",
		d.Seconds(), float64(c.restoreKeys)/d.Seconds(), float64(size)/(1<<20), float64(heap)/(1<<20))
	d, _, err = timeRestore(leveldb, int64(c.restoreKeys))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  LevelDB, local copy:     %6.2fs (nothing new in the changelog)\n", d.Seconds())
	// goka's memory storage sorts its keys on every new key, so a restore into it
	// takes time quadratic in the keys: it is timed on a prefix of the partition.
	memKeys := min(c.restoreKeys, memoryRestoreKeys)
	memory := state.Config[int64]{Name: "restore", Changelog: prefix{changelog, int64(memKeys)}, Codec: state.Int64{}, Storage: storage.MemoryBuilder()}
	d, heap, err = timeRestore(memory, int64(memKeys))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  memory store, %d keys: %6.2fs (%.0f keys/s); heap held %.1f MiB\n", memKeys, d.Seconds(), float64(memKeys)/d.Seconds(), float64(heap)/(1<<20))
	return nil
}

// memoryRestoreKeys is how many keys the memory store's restore is timed with.
const memoryRestoreKeys = 20000

// prefix is a changelog cut off after its first n records.
type prefix struct {
	*state.KafkaChangelog
	n int64
}

var errPrefixEnd = errors.New("end of the prefix")

func (p prefix) Restore(ctx context.Context, partition int32, from int64, apply func(state.Record) error) (int64, error) {
	next, err := p.KafkaChangelog.Restore(ctx, partition, from, func(r state.Record) error {
		if r.Offset >= p.n {
			return errPrefixEnd
		}
		return apply(r)
	})
	if errors.Is(err, errPrefixEnd) {
		err = nil
	}
	return next, err
}

// timeRestore builds a step of cfg, offers it a message of partition 0 at offset
// applied until it takes it (the store has restored), and returns how long that
// took and how much more heap is in use with the store open.
func timeRestore(cfg state.Config[int64], applied int64) (time.Duration, uint64, error) {
	heap0 := heapInUse()
	step, err := state.NewStep(cfg, func(string) string { return "key-0" },
		func(_ context.Context, _ string, _ processor.Message[string], n int64, _ bool) (int64, error) {
			return n + 1, nil
		},
		strategies.NewNoop[state.Change[string, int64]]())
	if err != nil {
		return 0, 0, err
	}
	// A replay of the last offset restored: it is skipped, and changes nothing.
	m := processor.NewBrokerMessage("x", processor.Partition{Topic: "in"}, applied-1, time.Time{})
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		err := step.Submit(m)
		if err == nil {
			break
		}
		if !errors.Is(err, processor.ErrMessageRejected) {
			return 0, 0, err
		}
		if err := step.Poll(); err != nil {
			return 0, 0, err
		}
		<-tick.C
	}
	took := time.Since(start)
	heap := heapInUse() - min(heap0, heapInUse())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	step.Close()
	return took, heap, step.Join(ctx)
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	return n, err
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func wallOf(s sample) time.Duration { return s.wall }
func cpuOf(s sample) time.Duration  { return s.cpu }

func median(ss []sample, f func(sample) time.Duration) time.Duration {
	v := values(ss, f)
	return v[len(v)/2]
}
func minOf(ss []sample, f func(sample) time.Duration) time.Duration { return values(ss, f)[0] }
func maxOf(ss []sample, f func(sample) time.Duration) time.Duration {
	v := values(ss, f)
	return v[len(v)-1]
}

func values(ss []sample, f func(sample) time.Duration) []time.Duration {
	v := make([]time.Duration, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	return v
}
