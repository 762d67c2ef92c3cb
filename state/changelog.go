package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Record is one change of a store as its changelog holds it: the key's new value and
// the input offset of the message that made it.
type Record struct {
	Key   []byte
	Value []byte
	// Applied is the offset of the input message whose processing wrote the value.
	Applied int64
	// Offset is the record's offset in the changelog partition; Append ignores it.
	Offset int64
}

// Changelog is where a store writes its changes and what it is restored from. Its
// partition p holds the changes of the store of input partition p.
type Changelog interface {
	// Append writes r to partition. done is called once, from any goroutine, with
	// the record's changelog offset once the broker has it, or with the error that
	// made the write fail. Append may block while the client's buffer is full.
	Append(partition int32, r Record, done func(offset int64, err error))
	// Restore reads partition from offset from up to its end as it is when Restore
	// starts, handing apply each record in order. It returns the offset after the
	// last record read (from when there was none).
	Restore(ctx context.Context, partition int32, from int64, apply func(Record) error) (next int64, err error)
}

// appliedHeader is the changelog record header that carries Record.Applied.
const appliedHeader = "creek.applied"

// defaultDeliveryTimeout bounds a changelog write that the broker does not
// acknowledge; franz-go's own default waits for ever.
const defaultDeliveryTimeout = time.Minute

// KafkaChangelog is a Changelog on a compacted Kafka topic, through franz-go. It is
// safe for concurrent use.
type KafkaChangelog struct {
	topic    string
	opts     []kgo.Opt
	producer *kgo.Client
	adm      *kadm.Client
}

var _ Changelog = (*KafkaChangelog)(nil)

// NewKafkaChangelog returns a changelog on topic. opts configure the franz-go
// clients it makes, and must name the brokers (kgo.SeedBrokers); they may add TLS,
// SASL or producer tuning. Writes are acknowledged by all in-sync replicas and
// idempotent, and fail after a minute without an acknowledgement unless opts say
// otherwise (kgo.RecordDeliveryTimeout). Close it when the processor has ended.
func NewKafkaChangelog(topic string, opts ...kgo.Opt) (*KafkaChangelog, error) {
	if topic == "" {
		return nil, errors.New("state: changelog topic is empty; name the compacted topic the store's changes go to")
	}
	if len(opts) == 0 {
		return nil, errors.New("state: changelog has no client options; pass at least kgo.SeedBrokers")
	}
	popts := append([]kgo.Opt{kgo.RecordDeliveryTimeout(defaultDeliveryTimeout)}, opts...)
	// A change must land on the partition of the input it came from.
	popts = append(popts, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	cl, err := kgo.NewClient(popts...)
	if err != nil {
		return nil, fmt.Errorf("state: changelog client: %w", err)
	}
	return &KafkaChangelog{topic: topic, opts: opts, producer: cl, adm: kadm.NewClient(cl)}, nil
}

// Topic returns the changelog topic.
func (c *KafkaChangelog) Topic() string { return c.topic }

// Create creates the changelog topic, compacted, with partitions partitions (as
// many as the input topic has) and the given replication factor. A topic that
// exists already is left as it is.
func (c *KafkaChangelog) Create(ctx context.Context, partitions int32, replication int16) error {
	compact := "compact"
	_, err := c.adm.CreateTopic(ctx, partitions, replication, map[string]*string{"cleanup.policy": &compact}, c.topic)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("state: create changelog topic %s: %w", c.topic, err)
	}
	return nil
}

// Close flushes nothing: it closes the client, failing writes still in flight.
// Close the processor first, whose chains wait for their writes.
func (c *KafkaChangelog) Close() { c.producer.Close() }

// Append implements Changelog.
func (c *KafkaChangelog) Append(partition int32, r Record, done func(int64, error)) {
	rec := &kgo.Record{
		Partition: partition,
		Key:       r.Key,
		Value:     r.Value,
		Headers:   []kgo.RecordHeader{{Key: appliedHeader, Value: strconv.AppendInt(nil, r.Applied, 10)}},
	}
	// The delivery timeout bounds the write; a context would only add a second bound.
	c.producer.Produce(context.Background(), rec, func(rec *kgo.Record, err error) {
		if err != nil {
			done(0, fmt.Errorf("state: write to changelog %s/%d: %w", c.topic, partition, err))
			return
		}
		done(rec.Offset, nil)
	})
}

// Restore implements Changelog. It reads with a client of its own, so that
// partitions restore side by side.
func (c *KafkaChangelog) Restore(ctx context.Context, partition int32, from int64, apply func(Record) error) (int64, error) {
	start, end, err := c.bounds(ctx, partition)
	if err != nil {
		return from, err
	}
	if from < start {
		// The records before start were deleted; the store has nothing of theirs to
		// keep anyway once it starts over from start.
		from = start
	}
	if from > end {
		return from, fmt.Errorf("state: changelog %s/%d ends at %d, before the store's position %d: %w", c.topic, partition, end, from, errStoreAhead)
	}
	if from == end {
		return from, nil
	}
	cl, err := kgo.NewClient(append(c.opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c.topic: {partition: kgo.NewOffset().At(from)}}))...)
	if err != nil {
		return from, fmt.Errorf("state: changelog restore client: %w", err)
	}
	defer cl.Close()
	next := from
	for next < end {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return next, err
		}
		for _, fe := range fetches.Errors() {
			return next, fmt.Errorf("state: read changelog %s/%d: %w", c.topic, partition, fe.Err)
		}
		for it := fetches.RecordIter(); !it.Done(); {
			rec := it.Next()
			r, err := recordOf(rec)
			if err != nil {
				return next, err
			}
			if err := apply(r); err != nil {
				return next, err
			}
			next = rec.Offset + 1
		}
	}
	return next, nil
}

// bounds returns the first and the next offset of a changelog partition.
func (c *KafkaChangelog) bounds(ctx context.Context, partition int32) (start, end int64, err error) {
	get := func(list func(context.Context, ...string) (kadm.ListedOffsets, error)) (int64, error) {
		listed, err := list(ctx, c.topic)
		if err != nil {
			return 0, fmt.Errorf("state: list offsets of changelog %s: %w", c.topic, err)
		}
		o, ok := listed.Lookup(c.topic, partition)
		if !ok {
			return 0, fmt.Errorf("state: changelog %s has no partition %d; it needs as many partitions as the input topic (KafkaChangelog.Create makes it)", c.topic, partition)
		}
		if o.Err != nil {
			return 0, fmt.Errorf("state: list offsets of changelog %s/%d: %w", c.topic, partition, o.Err)
		}
		return o.Offset, nil
	}
	if start, err = get(c.adm.ListStartOffsets); err != nil {
		return 0, 0, err
	}
	if end, err = get(c.adm.ListEndOffsets); err != nil {
		return 0, 0, err
	}
	return start, end, nil
}

// recordOf reads a changelog record.
func recordOf(rec *kgo.Record) (Record, error) {
	r := Record{Key: rec.Key, Value: rec.Value, Applied: -1, Offset: rec.Offset}
	for _, h := range rec.Headers {
		if h.Key != appliedHeader {
			continue
		}
		n, err := strconv.ParseInt(string(h.Value), 10, 64)
		if err != nil {
			return r, fmt.Errorf("state: changelog %s/%d offset %d: header %s is %q, not an offset", rec.Topic, rec.Partition, rec.Offset, appliedHeader, h.Value)
		}
		r.Applied = n
	}
	return r, nil
}
