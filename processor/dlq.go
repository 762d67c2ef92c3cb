package processor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/creekstream/creek/internal/defaults"
	"go.opentelemetry.io/otel/propagation"
	"go.uber.org/zap"
)

// DLQPolicy configures the dead-letter queue: where invalid messages go, how many may
// go there, and how much of the raw input the processor keeps to send them.
type DLQPolicy[T any] struct {
	// Producer sends invalid messages to the dead-letter queue. Required; for Kafka
	// use kafka.NewDLQProducer.
	Producer DLQProducer[T]
	// MaxInvalidRatio is the largest ratio of invalid to valid messages of one
	// partition that is still dead-lettered; past it invalid messages are dropped and
	// counted. 0 means no limit.
	MaxInvalidRatio float64
	// MaxConsecutiveInvalid is the largest run of invalid messages at consecutive
	// offsets of one partition that is still dead-lettered. 0 means no limit.
	MaxConsecutiveInvalid int
	// BufferBytesPerPartition bounds the raw messages kept per partition until they
	// are committed (default 4 MiB). An invalid message no longer in the buffer is
	// read again through the consumer's Fetcher.
	BufferBytesPerPartition int
	// MaxPendingPerPartition bounds the DLQ deliveries awaited per partition (default
	// 2000); when full, the processor waits for the oldest.
	MaxPendingPerPartition int
	// Size returns a payload's size in bytes for the buffer bound. It may be nil when
	// T is KafkaPayload or has a Size() int method.
	Size func(T) int
	// Timeout bounds each wait on the DLQ: one delivery, or one fetch of an evicted
	// message (default 10 s). A delivery not done in time is counted as dropped.
	Timeout time.Duration
}

const (
	defaultDLQBufferBytes = 4 << 20
	defaultDLQMaxPending  = 2000
	defaultDLQTimeout     = 10 * time.Second
)

// withDefaults validates p and fills in its defaults.
func (p DLQPolicy[T]) withDefaults() (DLQPolicy[T], error) {
	switch {
	case p.Producer == nil:
		return p, errors.New("processor: DLQPolicy.Producer is nil; set it (kafka.NewDLQProducer for Kafka) or leave Config.DLQ nil")
	case p.MaxInvalidRatio < 0:
		return p, fmt.Errorf("processor: DLQPolicy.MaxInvalidRatio is %v; set it >= 0 (0 = no limit)", p.MaxInvalidRatio)
	case p.MaxConsecutiveInvalid < 0:
		return p, fmt.Errorf("processor: DLQPolicy.MaxConsecutiveInvalid is %d; set it >= 0 (0 = no limit)", p.MaxConsecutiveInvalid)
	}
	if err := defaults.Ints(
		defaults.Int{Name: "processor: DLQPolicy.BufferBytesPerPartition", Value: &p.BufferBytesPerPartition, Default: defaultDLQBufferBytes},
		defaults.Int{Name: "processor: DLQPolicy.MaxPendingPerPartition", Value: &p.MaxPendingPerPartition, Default: defaultDLQMaxPending},
	); err != nil {
		return p, err
	}
	if err := defaults.Durations(defaults.Duration{Name: "processor: DLQPolicy.Timeout", Value: &p.Timeout, Default: defaultDLQTimeout}); err != nil {
		return p, err
	}
	if p.Size == nil {
		var zero T
		if _, ok := any(zero).(interface{ Size() int }); !ok {
			return p, fmt.Errorf("processor: DLQPolicy.Size is nil and %v has no Size() int method; set Size", reflect.TypeFor[T]())
		}
		p.Size = func(v T) int { return any(v).(interface{ Size() int }).Size() }
	}
	return p, nil
}

// dlqEntry is one raw message kept until its offset is committed.
type dlqEntry[T any] struct {
	offset int64
	size   int
	msg    Message[T]
}

// pendingDelivery is a DLQ produce not yet known to have succeeded.
type pendingDelivery struct {
	offset   int64
	delivery *Delivery
	inv      *InvalidMessageError
}

// dlqPartition is what the DLQ keeps for one partition.
type dlqPartition[T any] struct {
	// entries are in offset order; head is the index of the oldest one kept, so that
	// dropping from the front does not move memory on every commit.
	entries []dlqEntry[T]
	head    int
	bytes   int
	pending []pendingDelivery

	polled, invalid int64
	lastInvalid     int64
	consecutive     int
}

// dlq buffers raw messages and sends invalid ones to the dead-letter queue. It is
// owned by the processor's loop goroutine.
type dlq[T any] struct {
	policy  DLQPolicy[T]
	fetcher Fetcher[T] // nil when the consumer cannot read a message again
	parts   map[Partition]*dlqPartition[T]
	log     *zap.Logger
	m       *loopMetrics
	// evicted counts evictions until the loop adds them to m.dlqEvicted at its
	// next clock reading (loop.go).
	evicted int64
	// prop is Config.Propagator: when set, what is sent carries the message's trace
	// context (traceDLQ).
	prop propagation.TextMapPropagator
}

func newDLQ[T any](policy DLQPolicy[T], fetcher Fetcher[T], log *zap.Logger, m *loopMetrics) *dlq[T] {
	return &dlq[T]{policy: policy, fetcher: fetcher, parts: make(map[Partition]*dlqPartition[T]), log: log, m: m}
}

func (d *dlq[T]) partition(p Partition) *dlqPartition[T] {
	dp, ok := d.parts[p]
	if !ok {
		dp = &dlqPartition[T]{lastInvalid: -2}
		d.parts[p] = dp
	}
	return dp
}

// record keeps the raw message msg, read from pos, evicting the oldest entries of its
// partition to stay within the byte bound.
func (d *dlq[T]) record(pos Position, msg Message[T]) {
	dp := d.partition(pos.Partition)
	dp.polled++
	size := d.policy.Size(msg.Payload)
	limit := d.policy.BufferBytesPerPartition
	for dp.bytes+size > limit && dp.head < len(dp.entries) {
		e := dp.entries[dp.head]
		dp.entries[dp.head] = dlqEntry[T]{}
		dp.head++
		dp.bytes -= e.size
		d.evicted++
	}
	if size > limit {
		d.evicted++
		return
	}
	dp.entries = append(dp.entries, dlqEntry[T]{offset: pos.Offset, size: size, msg: msg})
	dp.bytes += size
	dp.compact()
}

// compact moves the kept entries to the front once more than half the slice is
// dropped ones, so memory stays proportional to what is kept.
func (dp *dlqPartition[T]) compact() {
	if dp.head > 64 && dp.head*2 > len(dp.entries) {
		n := copy(dp.entries, dp.entries[dp.head:])
		clear(dp.entries[n:])
		dp.entries = dp.entries[:n]
		dp.head = 0
	}
}

// lookup returns the kept raw message at offset.
func (dp *dlqPartition[T]) lookup(offset int64) (Message[T], bool) {
	kept := dp.entries[dp.head:]
	lo, hi := 0, len(kept)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if kept[mid].offset < offset {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(kept) && kept[lo].offset == offset {
		return kept[lo].msg, true
	}
	return Message[T]{}, false
}

// handle sends the message inv names to the dead-letter queue, unless a limit is
// exceeded or it cannot be found; either way the consumer carries on.
func (d *dlq[T]) handle(inv *InvalidMessageError) {
	dp := d.partition(inv.Partition)
	dp.invalid++
	if inv.Offset == dp.lastInvalid+1 {
		dp.consecutive++
	} else {
		dp.consecutive = 1
	}
	dp.lastInvalid = inv.Offset
	if reason := d.overLimit(dp); reason != "" {
		d.drop(inv, reason, nil)
		return
	}
	msg, ok := dp.lookup(inv.Offset)
	if !ok {
		var err error
		if msg, err = d.refetch(inv); err != nil {
			d.drop(inv, "raw message not available", err)
			return
		}
	}
	for len(dp.pending) >= d.policy.MaxPendingPerPartition {
		d.await(dp, dp.pending[0].offset+1)
	}
	base := context.Background()
	if d.prop != nil {
		base, msg = traceDLQ(d.prop, msg)
	}
	ctx, cancel := context.WithTimeout(base, d.policy.Timeout)
	defer cancel()
	dp.pending = append(dp.pending, pendingDelivery{offset: inv.Offset, delivery: d.policy.Producer.Produce(ctx, msg, inv), inv: inv})
}

// overLimit says which limit, if any, stops dp's latest invalid message going to the
// DLQ. With no valid message yet the ratio is unbounded, as in Arroyo: a partition
// that is all invalid points at a broken pipeline rather than bad input.
func (d *dlq[T]) overLimit(dp *dlqPartition[T]) string {
	if limit := d.policy.MaxConsecutiveInvalid; limit > 0 && dp.consecutive > limit {
		return fmt.Sprintf("more than %d consecutive invalid messages", limit)
	}
	if limit := d.policy.MaxInvalidRatio; limit > 0 {
		valid := dp.polled - dp.invalid
		if valid <= 0 || float64(dp.invalid)/float64(valid) > limit {
			return fmt.Sprintf("invalid/valid ratio above %v", limit)
		}
	}
	return ""
}

func (d *dlq[T]) refetch(inv *InvalidMessageError) (Message[T], error) {
	if d.fetcher == nil {
		return Message[T]{}, errors.New("evicted from the DLQ buffer and the consumer has no Fetch")
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.policy.Timeout)
	defer cancel()
	d.m.dlqRefetched.Add(1)
	msg, err := d.fetcher.Fetch(ctx, Position{Partition: inv.Partition, Offset: inv.Offset})
	if err != nil {
		return Message[T]{}, fmt.Errorf("fetch evicted message: %w", err)
	}
	return msg, nil
}

func (d *dlq[T]) drop(inv *InvalidMessageError, why string, err error) {
	d.m.dlqDropped.Add(1)
	d.log.Warn("invalid message not sent to the dead-letter queue",
		zap.Stringer("partition", inv.Partition), zap.Int64("offset", inv.Offset),
		zap.String("reason", inv.Reason), zap.String("why", why), zap.Error(err))
}

// await waits for dp's deliveries of offsets below next, all within one policy
// timeout so that a dead DLQ broker costs one timeout, not one per message, and
// counts those that failed or did not finish as dropped.
func (d *dlq[T]) await(dp *dlqPartition[T], next int64) {
	n := 0
	for n < len(dp.pending) && dp.pending[n].offset < next {
		n++
	}
	if n == 0 {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), d.policy.Timeout)
	defer cancel()
	for _, pd := range dp.pending[:n] {
		var err error
		select {
		case <-pd.delivery.Done():
			// Done first: with both ready, Wait could report the timeout instead.
			_, err = pd.delivery.Result()
		default:
			_, err = pd.delivery.Wait(ctx)
		}
		if err != nil {
			d.drop(pd.inv, "produce failed", err)
		}
	}
	clear(dp.pending[:n])
	dp.pending = dp.pending[n:]
	d.m.dlqTime.Add(time.Since(start))
}

// beforeCommit waits for the deliveries of messages below the offsets about to be
// committed, so that a committed offset never stands for an undelivered DLQ message.
func (d *dlq[T]) beforeCommit(offsets map[Partition]int64) {
	for p, next := range offsets {
		if dp, ok := d.parts[p]; ok && len(dp.pending) > 0 {
			d.await(dp, next)
		}
	}
}

// committed drops the raw messages below the committed offsets.
func (d *dlq[T]) committed(offsets map[Partition]int64) {
	for p, next := range offsets {
		dp, ok := d.parts[p]
		if !ok {
			continue
		}
		for dp.head < len(dp.entries) && dp.entries[dp.head].offset < next {
			dp.bytes -= dp.entries[dp.head].size
			dp.entries[dp.head] = dlqEntry[T]{}
			dp.head++
		}
		if dp.head == len(dp.entries) {
			dp.entries, dp.head = dp.entries[:0], 0
		} else {
			dp.compact()
		}
	}
}

// forget drops everything kept for revoked partitions, after waiting for their
// deliveries so that none is left behind unaccounted.
func (d *dlq[T]) forget(ps []Partition) {
	for _, p := range ps {
		if dp, ok := d.parts[p]; ok {
			d.await(dp, int64(^uint64(0)>>1))
			delete(d.parts, p)
		}
	}
}

// buffered returns the number of raw messages kept over all partitions.
func (d *dlq[T]) buffered() int {
	n := 0
	for _, dp := range d.parts {
		n += len(dp.entries) - dp.head
	}
	return n
}
