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
	// use kafka.NewDLQProducer. Its size limits (sarama's Producer.MaxMessageBytes and
	// franz-go's ProducerBatchMaxBytes, both 1 MB by default, and the DLQ topic's
	// max.message.bytes) must admit the largest input message: a larger invalid one
	// fails every delivery and holds its partition until GiveUpAfter.
	Producer DLQProducer[T]
	// MaxInvalidRatio is the largest ratio of invalid to valid messages of one
	// partition that is still dead-lettered; past it the processor fails with an
	// error wrapping ErrDLQLimit, since so many invalid messages point at a broken
	// pipeline rather than bad input. 0 means no limit.
	MaxInvalidRatio float64
	// MaxConsecutiveInvalid is the largest run of invalid messages at consecutive
	// offsets of one partition that is still dead-lettered; past it the processor
	// fails as for MaxInvalidRatio. 0 means no limit.
	MaxConsecutiveInvalid int
	// BufferBytesPerPartition bounds the raw messages kept per partition until they
	// are committed (default 4 MiB). An invalid message no longer in the buffer, or
	// larger than the bound and so never kept, is read again through the consumer's
	// Fetcher.
	BufferBytesPerPartition int
	// MaxPendingPerPartition bounds the DLQ deliveries awaited per partition (default
	// 2000); when full, the processor waits for the oldest.
	MaxPendingPerPartition int
	// Size returns a payload's size in bytes for the buffer bound. It may be nil when
	// T is KafkaPayload or has a Size() int method.
	Size func(T) int
	// Timeout bounds each wait on the DLQ: one delivery, or one fetch of an evicted
	// message (default 10 s). A delivery not done in time has failed.
	Timeout time.Duration
	// RetryBackoff is the wait before a failed delivery is tried again; it doubles
	// with every failure of the same message up to MaxRetryBackoff (defaults 100 ms
	// and 10 s). While a message is retried its partition is paused and nothing at
	// or past its offset is committed, so it is never lost.
	RetryBackoff, MaxRetryBackoff time.Duration
	// GiveUpAfter bounds how long the deliveries of one message are retried; then
	// OnGiveUp applies. 0, the default, retries for ever.
	GiveUpAfter time.Duration
	// OnGiveUp is what happens to a message given up after GiveUpAfter.
	OnGiveUp DLQGiveUp
}

// DLQGiveUp is what the DLQ does with a message whose deliveries failed for
// DLQPolicy.GiveUpAfter.
type DLQGiveUp uint8

const (
	// DLQFail fails the processor with an error that names the message (the
	// default): nothing is committed past it, and it is read again on restart.
	DLQFail DLQGiveUp = iota
	// DLQSkip drops the message, counting it in consumer.dlq.dropped_messages with
	// an error log, and lets its offset be committed: the message is lost.
	DLQSkip
)

// ErrDLQLimit is wrapped by the error that fails the processor when a partition's
// invalid messages exceed DLQPolicy.MaxInvalidRatio or MaxConsecutiveInvalid.
var ErrDLQLimit = errors.New("dead-letter limit exceeded")

// ErrDLQGaveUp is wrapped by the error that fails the processor when a message's
// DLQ deliveries failed for DLQPolicy.GiveUpAfter with OnGiveUp DLQFail.
var ErrDLQGaveUp = errors.New("dead-letter delivery given up")

const (
	defaultDLQBufferBytes     = 4 << 20
	defaultDLQMaxPending      = 2000
	defaultDLQTimeout         = 10 * time.Second
	defaultDLQRetryBackoff    = 100 * time.Millisecond
	defaultDLQMaxRetryBackoff = 10 * time.Second
	// dlqTickInterval spaces the loop's checks of deliveries in flight and retries.
	dlqTickInterval = 20 * time.Millisecond
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
	if err := defaults.Durations(
		defaults.Duration{Name: "processor: DLQPolicy.Timeout", Value: &p.Timeout, Default: defaultDLQTimeout},
		defaults.Duration{Name: "processor: DLQPolicy.RetryBackoff", Value: &p.RetryBackoff, Default: defaultDLQRetryBackoff},
		defaults.Duration{Name: "processor: DLQPolicy.MaxRetryBackoff", Value: &p.MaxRetryBackoff, Default: defaultDLQMaxRetryBackoff},
	); err != nil {
		return p, err
	}
	switch {
	case p.MaxRetryBackoff < p.RetryBackoff:
		return p, fmt.Errorf("processor: DLQPolicy.MaxRetryBackoff (%v) is below RetryBackoff (%v); raise it", p.MaxRetryBackoff, p.RetryBackoff)
	case p.GiveUpAfter < 0:
		return p, fmt.Errorf("processor: DLQPolicy.GiveUpAfter is %v; set it > 0, or 0 to retry for ever", p.GiveUpAfter)
	case p.OnGiveUp > DLQSkip:
		return p, fmt.Errorf("processor: DLQPolicy.OnGiveUp is %d; use DLQFail or DLQSkip", p.OnGiveUp)
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
type pendingDelivery[T any] struct {
	delivery *Delivery
	attempt  dlqAttempt[T]
}

// dlqAttempt is one message on its way to the DLQ, with its failures so far.
type dlqAttempt[T any] struct {
	offset int64
	inv    *InvalidMessageError
	// msg is the raw message, if it could be read.
	msg    Message[T]
	hasMsg bool
	// failures counts the failed tries; firstFailed is when the first failed, and
	// next when to try again.
	failures    int
	firstFailed time.Time
	next        time.Time
}

// dlqPartition is what the DLQ keeps for one partition.
type dlqPartition[T any] struct {
	// entries are in offset order; head is the index of the oldest one kept, so that
	// dropping from the front does not move memory on every commit.
	entries []dlqEntry[T]
	head    int
	bytes   int
	pending []pendingDelivery[T]
	// failed are the messages whose latest delivery failed, waiting to be tried
	// again; while there are any the partition is paused and commits stop below the
	// lowest of their offsets.
	failed []dlqAttempt[T]
	// held is set while the partition is paused for failed deliveries.
	held bool

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
	// pause and resume hold back, and let go, a partition with failed deliveries.
	pause, resume func(Partition)
	// evicted counts evictions until the loop adds them to m.dlqEvicted at its
	// next clock reading (loop.go).
	evicted int64
	// nextTick is when the loop next looks at deliveries and retries (tick).
	nextTick time.Time
	// prop is Config.Propagator: when set, what is sent carries the message's trace
	// context (traceDLQ).
	prop propagation.TextMapPropagator
}

func newDLQ[T any](policy DLQPolicy[T], fetcher Fetcher[T], log *zap.Logger, m *loopMetrics, pause, resume func(Partition)) *dlq[T] {
	return &dlq[T]{policy: policy, fetcher: fetcher, parts: make(map[Partition]*dlqPartition[T]), log: log, m: m, pause: pause, resume: resume}
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
// partition to stay within the byte bound. A message larger than the whole bound is
// not kept and evicts nothing: emptying the buffer would not make room for it, and
// every invalid message pushed out would have to be read from the broker again.
func (d *dlq[T]) record(pos Position, msg Message[T]) {
	dp := d.partition(pos.Partition)
	dp.polled++
	size := d.policy.Size(msg.Payload)
	limit := d.policy.BufferBytesPerPartition
	if size > limit {
		d.evicted++
		return
	}
	for dp.bytes+size > limit && dp.head < len(dp.entries) {
		e := dp.entries[dp.head]
		dp.entries[dp.head] = dlqEntry[T]{}
		dp.head++
		dp.bytes -= e.size
		d.evicted++
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

// handle sends the message inv names to the dead-letter queue. It fails when a limit
// is exceeded. A message that cannot be read or sent now is retried (see tick).
func (d *dlq[T]) handle(inv *InvalidMessageError) error {
	dp := d.partition(inv.Partition)
	dp.invalid++
	if inv.Offset == dp.lastInvalid+1 {
		dp.consecutive++
	} else {
		dp.consecutive = 1
	}
	dp.lastInvalid = inv.Offset
	if reason := d.overLimit(dp); reason != "" {
		return fmt.Errorf("processor: %w at partition %s offset %d: %s", ErrDLQLimit, inv.Partition, inv.Offset, reason)
	}
	a := dlqAttempt[T]{offset: inv.Offset, inv: inv}
	a.msg, a.hasMsg = dp.lookup(inv.Offset)
	for len(dp.pending) >= d.policy.MaxPendingPerPartition {
		d.await(dp, dp.pending[0].attempt.offset+1)
	}
	d.send(dp, a, time.Now())
	return nil
}

// send produces a's message, reading it again first if it was evicted; a failure to
// read it counts as a failed delivery.
func (d *dlq[T]) send(dp *dlqPartition[T], a dlqAttempt[T], now time.Time) {
	if !a.hasMsg {
		msg, err := d.refetch(a.inv)
		if err != nil {
			d.failed(dp, a, now, fmt.Errorf("raw message not available: %w", err))
			return
		}
		a.msg, a.hasMsg = msg, true
	}
	base, msg := context.Background(), a.msg
	if d.prop != nil {
		base, msg = traceDLQ(d.prop, msg)
	}
	ctx, cancel := context.WithTimeout(base, d.policy.Timeout)
	defer cancel()
	dp.pending = append(dp.pending, pendingDelivery[T]{delivery: d.policy.Producer.Produce(ctx, msg, a.inv), attempt: a})
}

// failed records a failed try of a and holds back its partition until a is sent.
func (d *dlq[T]) failed(dp *dlqPartition[T], a dlqAttempt[T], now time.Time, err error) {
	if a.failures == 0 {
		a.firstFailed = now
	}
	a.failures++
	backoff := d.policy.RetryBackoff << min(a.failures-1, 20)
	if backoff > d.policy.MaxRetryBackoff || backoff <= 0 {
		backoff = d.policy.MaxRetryBackoff
	}
	a.next = now.Add(backoff)
	d.m.dlqFailed.Add(1)
	d.log.Error("processor: dead-letter delivery failed; the partition is paused and the message will be tried again",
		zap.Stringer("partition", a.inv.Partition), zap.Int64("offset", a.offset), zap.String("reason", a.inv.Reason),
		zap.Int("failures", a.failures), zap.Duration("retry_in", backoff), zap.Error(err))
	if !dp.held {
		dp.held = true
		d.pause(a.inv.Partition)
	}
	i := len(dp.failed)
	for i > 0 && dp.failed[i-1].offset > a.offset {
		i--
	}
	dp.failed = append(dp.failed, dlqAttempt[T]{})
	copy(dp.failed[i+1:], dp.failed[i:])
	dp.failed[i] = a
}

// tick moves the deliveries along without waiting: it notes the finished ones, tries
// failed ones again once their backoff has passed, and applies OnGiveUp. The loop
// calls it at most every dlqTickInterval.
func (d *dlq[T]) tick(now time.Time) error {
	if now.Before(d.nextTick) {
		return nil
	}
	d.nextTick = now.Add(dlqTickInterval)
	for part, dp := range d.parts {
		for len(dp.pending) > 0 {
			pd := dp.pending[0]
			if !isDone(pd.delivery) {
				break
			}
			if _, err := pd.delivery.Result(); err != nil {
				d.failed(dp, pd.attempt, now, err)
			}
			dp.pending[0] = pendingDelivery[T]{}
			dp.pending = dp.pending[1:]
		}
		if !dp.held {
			continue
		}
		kept := dp.failed[:0]
		var retry []dlqAttempt[T]
		for _, a := range dp.failed {
			switch {
			case d.policy.GiveUpAfter > 0 && now.Sub(a.firstFailed) >= d.policy.GiveUpAfter:
				if d.policy.OnGiveUp == DLQFail {
					return fmt.Errorf("processor: %w: partition %s offset %d (%s) failed %d times over %v",
						ErrDLQGaveUp, part, a.offset, a.inv.Reason, a.failures, now.Sub(a.firstFailed))
				}
				d.m.dlqDropped.Add(1)
				d.log.Error("processor: dead-letter delivery given up; the message is dropped and its offset will be committed",
					zap.Stringer("partition", part), zap.Int64("offset", a.offset), zap.String("reason", a.inv.Reason), zap.Int("failures", a.failures))
			case !now.Before(a.next):
				retry = append(retry, a)
			default:
				kept = append(kept, a)
			}
		}
		clear(dp.failed[len(kept):])
		dp.failed = kept
		for _, a := range retry {
			d.send(dp, a, now)
		}
		if len(dp.failed) == 0 && !d.inFlightRetry(dp) {
			dp.held = false
			d.resume(part)
		}
	}
	return nil
}

// inFlightRetry reports whether a delivery of a message that failed before is still
// outstanding: its partition stays held until it is known to have arrived.
func (d *dlq[T]) inFlightRetry(dp *dlqPartition[T]) bool {
	for _, pd := range dp.pending {
		if pd.attempt.failures > 0 {
			return true
		}
	}
	return false
}

func isDone(d *Delivery) bool {
	select {
	case <-d.Done():
		return true
	default:
		return false
	}
}

// busy reports whether a delivery is outstanding or a failed one waits for its
// retry: the loop then comes round every dlqTickInterval to move them along.
func (d *dlq[T]) busy() bool {
	for _, dp := range d.parts {
		if len(dp.pending) > 0 || dp.held {
			return true
		}
	}
	return false
}

// held reports whether part is held back by failed deliveries.
func (d *dlq[T]) held(part Partition) bool {
	dp, ok := d.parts[part]
	return ok && dp.held
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

// await waits for dp's deliveries of offsets below next, all within one policy
// timeout so that a dead DLQ broker costs one timeout, not one per message. A
// delivery that failed, or did not finish in time, is tried again later.
func (d *dlq[T]) await(dp *dlqPartition[T], next int64) {
	n := 0
	for n < len(dp.pending) && dp.pending[n].attempt.offset < next {
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
			d.failed(dp, pd.attempt, time.Now(), err)
		}
	}
	clear(dp.pending[:n])
	dp.pending = dp.pending[n:]
	d.m.dlqTime.Add(time.Since(start))
}

// beforeCommit holds each partition's offset about to be committed at its lowest
// message not yet in the DLQ, so that a committed offset never stands for an
// undelivered DLQ message. With wait (a forced commit, which has no later one to
// leave the rest to) it first waits, within Timeout, for the deliveries below the
// offsets; otherwise the loop goes on and a later commit takes the rest.
func (d *dlq[T]) beforeCommit(offsets map[Partition]int64, wait bool) {
	for p, next := range offsets {
		dp, ok := d.parts[p]
		if !ok {
			continue
		}
		if wait && len(dp.pending) > 0 {
			d.await(dp, next)
		}
		low := next
		if len(dp.failed) > 0 {
			low = min(low, dp.failed[0].offset)
		}
		for _, pd := range dp.pending {
			// Retries join the queue behind later messages: look at every entry.
			if !isDone(pd.delivery) || pd.delivery.err != nil {
				low = min(low, pd.attempt.offset)
			}
		}
		if low < next {
			offsets[p] = low
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

// forget drops everything kept for revoked partitions. Their deliveries in flight
// and failed ones are left: no offset was committed past them, so the partition's
// next owner reads and dead-letters them again.
func (d *dlq[T]) forget(ps []Partition) {
	for _, p := range ps {
		if dp, ok := d.parts[p]; ok {
			if n := len(dp.failed); n > 0 {
				d.log.Warn("processor: a partition left with dead-letter deliveries still failing; its next owner reads them again",
					zap.Stringer("partition", p), zap.Int("messages", n))
			}
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
