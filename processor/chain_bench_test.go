package processor_test

import (
	"context"
	"testing"
	"time"

	"github.com/creekstream/creek/internal/cpustat"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

type kafkaMessage = processor.Message[processor.KafkaPayload]

// runConsumer hands out an endless stream of Kafka messages of 100 bytes, in runs of
// 256 per partition over 4 partitions as kafka.Consumer hands out its batches, as
// fast as it is asked.
type runConsumer struct {
	cb       processor.RebalanceCallbacks
	parts    []processor.Partition
	payload  processor.KafkaPayload
	ts       time.Time
	next     [4]int64
	n        int
	assigned bool
}

func newRunConsumer() *runConsumer {
	parts := make([]processor.Partition, 4)
	for i := range parts {
		parts[i] = processor.Partition{Topic: "bench", Index: int32(i)}
	}
	return &runConsumer{parts: parts, payload: processor.KafkaPayload{Value: make([]byte, 100)}, ts: time.Now()}
}

func (c *runConsumer) Subscribe(_ []string, cb processor.RebalanceCallbacks) error {
	c.cb = cb
	return nil
}

func (c *runConsumer) Poll(context.Context, time.Duration) (kafkaMessage, bool, error) {
	if !c.assigned {
		c.assigned = true
		c.cb.OnAssign(c.parts)
		return kafkaMessage{}, false, nil
	}
	i := (c.n / 256) % 4
	c.n++
	off := c.next[i]
	c.next[i]++
	return processor.NewBrokerMessage(c.payload, c.parts[i], off, c.ts), true, nil
}

// runPollConsumer is a runConsumer that hands out each partition's run of 256 at
// once, as the Kafka backends' PollRun does.
type runPollConsumer struct{ runConsumer }

func (c *runPollConsumer) PollRun(ctx context.Context, timeout time.Duration, into []kafkaMessage) ([]kafkaMessage, error) {
	if !c.assigned {
		_, _, err := c.Poll(ctx, timeout)
		return into, err
	}
	i := (c.n / 256) % 4
	n := min(256-c.n%256, cap(into)-len(into))
	for range n {
		into = append(into, processor.NewBrokerMessage(c.payload, c.parts[i], c.next[i], c.ts))
		c.next[i]++
	}
	c.n += n
	return into, nil
}

// ownRunConsumer hands out runs of a slice of its own, as the franz-go backend
// does with the messages its reader has converted already; it only writes each
// message's offset anew, so the loop's own cost is what is left.
type ownRunConsumer struct {
	runConsumer
	runs [4][]kafkaMessage
}

func newOwnRunConsumer() *ownRunConsumer {
	c := &ownRunConsumer{runConsumer: *newRunConsumer()}
	for i := range c.runs {
		c.runs[i] = make([]kafkaMessage, 256)
	}
	return c
}

func (c *ownRunConsumer) PollRun(ctx context.Context, timeout time.Duration, into []kafkaMessage) ([]kafkaMessage, error) {
	if !c.assigned {
		_, _, err := c.Poll(ctx, timeout)
		return into, err
	}
	i := (c.n / 256) % 4
	n := min(256-c.n%256, cap(into))
	run := c.runs[i][:n]
	for j := range run {
		run[j] = processor.NewBrokerMessage(c.payload, c.parts[i], c.next[i], c.ts)
		c.next[i]++
	}
	c.n += n
	return run, nil
}

func (c *runConsumer) Buffered() int                                               { return 1 }
func (c *runConsumer) Pause([]processor.Partition)                                 {}
func (c *runConsumer) Resume([]processor.Partition)                                {}
func (c *runConsumer) Paused() []processor.Partition                               { return nil }
func (c *runConsumer) Assignment() []processor.Partition                           { return c.parts }
func (c *runConsumer) Commit(context.Context, map[processor.Partition]int64) error { return nil }
func (c *runConsumer) Close() error                                                { return nil }

// BenchmarkLoopChain measures the loop with the chain bench/overhead runs,
// RunTask(identity) -> CommitOffsets with the default commit policy, on Kafka
// messages: the processor's serial cost per message in that comparison, without
// the broker.
func BenchmarkLoopChain(b *testing.B) {
	b.Run("poll=run", func(b *testing.B) {
		runLoopChain(b, &runPollConsumer{*newRunConsumer()}, processor.Config[processor.KafkaPayload]{}, nil)
	})
	b.Run("poll=own-run", func(b *testing.B) {
		runLoopChain(b, newOwnRunConsumer(), processor.Config[processor.KafkaPayload]{}, nil)
	})
	b.Run("poll=one", func(b *testing.B) {
		runLoopChain(b, newRunConsumer(), processor.Config[processor.KafkaPayload]{}, nil)
	})
}

// runLoopChain runs b.N messages of c through RunTask(identity) -> CommitOffsets on
// a processor configured with cfg (Topics filled in), calling each, if given, from
// the task with every message's context and its count so far.
func runLoopChain(b *testing.B, c processor.Consumer[processor.KafkaPayload], cfg processor.Config[processor.KafkaPayload], each func(ctx context.Context, n int)) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	identity := func(ctx context.Context, m kafkaMessage) (processor.KafkaPayload, error) {
		if each != nil {
			each(ctx, n)
		}
		if n++; n == b.N {
			cancel()
		}
		return m.Payload, nil
	}
	factory := processor.FactoryFunc[processor.KafkaPayload](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[processor.KafkaPayload], error) {
		return strategies.NewRunTask(identity, processor.Strategy[processor.KafkaPayload](strategies.NewCommitOffsets[processor.KafkaPayload](commit))), nil
	})
	cfg.Topics = []string{"bench"}
	p, err := processor.New(c, factory, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	if err := p.Run(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cpu.report()
	if n < b.N {
		b.Fatalf("processed %d messages, want %d", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// cpuClock reports a benchmark's process CPU time per op as cpu-ns/op. On a
// shared, loaded machine the wall time per op mostly measures how often the
// scheduler let the benchmark run; the CPU time it used moves far less.
type cpuClock struct {
	b     *testing.B
	start time.Duration
}

// startCPU resets b's timer and starts counting the process's CPU time.
func startCPU(b *testing.B) cpuClock {
	b.ResetTimer()
	return cpuClock{b: b, start: cpustat.Self(b)}
}

func (c cpuClock) report() {
	c.b.ReportMetric(float64(cpustat.Self(c.b)-c.start)/float64(c.b.N), "cpu-ns/op")
}
