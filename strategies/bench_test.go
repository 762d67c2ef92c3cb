package strategies

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

// benchMessages returns n broker messages spread round robin over 4 partitions,
// built before the timer starts so that only the chain is measured.
func benchMessages(n int) []processor.Message[processor.KafkaPayload] {
	msgs := make([]processor.Message[processor.KafkaPayload], n)
	payload := processor.KafkaPayload{Key: []byte("k"), Value: []byte("a small value")}
	ts := time.Now()
	for i := range msgs {
		p := processor.Partition{Topic: "bench", Index: int32(i % 4)}
		msgs[i] = processor.NewBrokerMessage(payload, p, int64(i/4), ts)
	}
	return msgs
}

// stagingCommit returns a CommitFunc that stages offsets the way the processor does:
// only for assigned partitions, keeping the highest next offset per partition.
func stagingCommit(assigned []processor.Partition) (processor.CommitFunc, map[processor.Partition]int64) {
	isAssigned := make(map[processor.Partition]bool, len(assigned))
	for _, p := range assigned {
		isAssigned[p] = true
	}
	staged := make(map[processor.Partition]int64, len(assigned))
	stageOne := func(p processor.Partition, next int64) {
		if !isAssigned[p] {
			return
		}
		if cur, ok := staged[p]; !ok || next > cur {
			staged[p] = next
		}
	}
	return func(c processor.Committable, _ bool) error {
		if p, next, ok := c.Single(); ok {
			stageOne(p, next)
			return nil
		}
		for p, next := range c.All() {
			stageOne(p, next)
		}
		return nil
	}, staged
}

// BenchmarkRunTaskCommitOffsets measures one message through RunTask(identity) ->
// CommitOffsets, committing into a processor-like staging map. Target: under 100 ns
// and at most 1 allocation per message.
func BenchmarkRunTaskCommitOffsets(b *testing.B) {
	msgs := benchMessages(1 << 12)
	parts := []processor.Partition{{Topic: "bench", Index: 0}, {Topic: "bench", Index: 1}, {Topic: "bench", Index: 2}, {Topic: "bench", Index: 3}}
	commit, staged := stagingCommit(parts)
	identity := func(_ context.Context, m processor.Message[processor.KafkaPayload]) (processor.KafkaPayload, error) {
		return m.Payload, nil
	}
	s := NewRunTask(identity, processor.Strategy[processor.KafkaPayload](NewCommitOffsets[processor.KafkaPayload](commit)))

	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Submit(msgs[i&(len(msgs)-1)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	if len(staged) != 4 {
		b.Fatalf("%d partitions staged, want 4", len(staged))
	}
}

// BenchmarkProduceCommitOffsets measures one message through Produce -> CommitOffsets
// with deliveries acknowledged in batches of 256, polled like the processor's loop.
func BenchmarkProduceCommitOffsets(b *testing.B) {
	benchProduce(b, benchMessages(1<<12))
}

// benchProduce runs msgs, round and round, through Produce (built with opts) ->
// CommitOffsets.
func benchProduce(b *testing.B, msgs []processor.Message[processor.KafkaPayload], opts ...ProduceOption) {
	parts := []processor.Partition{{Topic: "bench", Index: 0}, {Topic: "bench", Index: 1}, {Topic: "bench", Index: 2}, {Topic: "bench", Index: 3}}
	commit, _ := stagingCommit(parts)
	prod := &ackingProducer{}
	s, err := NewProduce[processor.KafkaPayload](prod, "out", NewCommitOffsets[processor.KafkaPayload](commit), 0, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Submit(msgs[i&(len(msgs)-1)]); err != nil {
			b.Fatal(err)
		}
		i++
		if i%256 == 0 {
			if err := s.Poll(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// ackingProducer resolves every delivery at once, so that the benchmark measures
// Produce rather than a producer.
type ackingProducer struct{ offset int64 }

func (p *ackingProducer) Produce(_ context.Context, topic string, _ processor.KafkaPayload) *processor.Delivery {
	d := processor.NewDelivery()
	d.Resolve(processor.Position{Partition: processor.Partition{Topic: topic}, Offset: p.offset}, nil)
	p.offset++
	return d
}

// BenchmarkRunTaskConcurrentlyCommitOffsets measures one message through
// RunTaskConcurrently(identity) -> CommitOffsets on 4 goroutines, submitting until
// rejected and then polling like the processor's loop.
func BenchmarkRunTaskConcurrentlyCommitOffsets(b *testing.B) {
	benchConcurrently(b, func(fn func(context.Context, processor.Message[processor.KafkaPayload]) (processor.KafkaPayload, error), next processor.Strategy[processor.KafkaPayload]) (*RunTaskConcurrently[processor.KafkaPayload, processor.KafkaPayload], error) {
		return NewRunTaskConcurrently(fn, 4, 1024, next)
	})
}

// BenchmarkRunTaskInBatchesCommitOffsets is the same in batched mode, 64 messages a
// batch.
func BenchmarkRunTaskInBatchesCommitOffsets(b *testing.B) {
	benchConcurrently(b, func(fn func(context.Context, processor.Message[processor.KafkaPayload]) (processor.KafkaPayload, error), next processor.Strategy[processor.KafkaPayload]) (*RunTaskConcurrently[processor.KafkaPayload, processor.KafkaPayload], error) {
		return NewRunTaskInBatches(fn, ParallelBatchConfig{Concurrency: 4, MaxPendingBatches: 16, MaxBatchSize: 64, MaxBatchWait: time.Second}, next)
	})
}

func benchConcurrently(b *testing.B, build func(func(context.Context, processor.Message[processor.KafkaPayload]) (processor.KafkaPayload, error), processor.Strategy[processor.KafkaPayload]) (*RunTaskConcurrently[processor.KafkaPayload, processor.KafkaPayload], error)) {
	msgs := benchMessages(1 << 12)
	parts := []processor.Partition{{Topic: "bench", Index: 0}, {Topic: "bench", Index: 1}, {Topic: "bench", Index: 2}, {Topic: "bench", Index: 3}}
	commit, _ := stagingCommit(parts)
	identity := func(_ context.Context, m processor.Message[processor.KafkaPayload]) (processor.KafkaPayload, error) {
		return m.Payload, nil
	}
	s, err := build(identity, NewCommitOffsets[processor.KafkaPayload](commit))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for {
			err := s.Submit(msgs[i&(len(msgs)-1)])
			if err == nil {
				break
			}
			if !errors.Is(err, processor.ErrMessageRejected) {
				b.Fatal(err)
			}
			if err := s.Poll(); err != nil {
				b.Fatal(err)
			}
		}
		i++
	}
	b.StopTimer()
	if err := s.Join(context.Background()); err != nil {
		b.Fatal(err)
	}
}
