package processor

import (
	"context"
	"sync"
	"time"
)

// KafkaPayload is a Kafka record's key, value and headers: what a consumer reads and
// a producer writes.
type KafkaPayload struct {
	Key     []byte
	Value   []byte
	Headers []Header
}

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Size returns the number of bytes the payload holds.
func (p KafkaPayload) Size() int {
	n := len(p.Key) + len(p.Value)
	for _, h := range p.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Delivery is the pending result of producing one message. It is resolved exactly
// once, by the producer; anyone may wait on Done.
type Delivery struct {
	once sync.Once
	done chan struct{}
	pos  Position
	err  error
}

// NewDelivery returns an unresolved Delivery.
func NewDelivery() *Delivery { return &Delivery{done: make(chan struct{})} }

// Resolve records the outcome: the position written to, or the error. Later calls do
// nothing.
func (d *Delivery) Resolve(pos Position, err error) {
	d.once.Do(func() {
		d.pos, d.err = pos, err
		close(d.done)
	})
}

// Done is closed once the delivery is resolved.
func (d *Delivery) Done() <-chan struct{} { return d.done }

// Result returns the outcome. It must be called only after Done is closed.
func (d *Delivery) Result() (Position, error) { return d.pos, d.err }

// Wait blocks until the delivery is resolved or ctx is done. A delivery resolved
// already gives its outcome even when ctx is done, so that a caller being stopped
// does not take a write Kafka acknowledged for a failed one.
func (d *Delivery) Wait(ctx context.Context) (Position, error) {
	select {
	case <-d.done:
		return d.pos, d.err
	default:
	}
	select {
	case <-d.done:
		return d.pos, d.err
	case <-ctx.Done():
		return Position{}, ctx.Err()
	}
}

// Consumer is the broker side of a StreamProcessor. kafka.Consumer implements it on
// sarama's consumer group; tests may use a fake.
//
// Every method is called from the processor's loop goroutine. Rebalance callbacks run
// on that goroutine too, from inside Poll.
//
// A consumer that also has PollRun(ctx, timeout, into []Message[T]) ([]Message[T],
// error), which returns up to cap(into) messages of one partition in offset order
// (waiting at most timeout for the first) and runs the callbacks as Poll does, is
// polled that way, for a partition's run of messages at once; both Kafka backends
// have it. The run may be appended to into or be a slice of the consumer's own,
// which the processor uses only until its next Poll or PollRun call.
type Consumer[T any] interface {
	// Subscribe starts consuming topics. cb's functions run inside later Poll calls.
	Subscribe(topics []string, cb RebalanceCallbacks) error
	// Poll returns the next message, waiting at most timeout; ok is false when none
	// came. Messages of one partition come in offset order.
	Poll(ctx context.Context, timeout time.Duration) (msg Message[T], ok bool, err error)
	// Pause stops fetching from partitions without leaving the group; Resume undoes it.
	Pause(partitions []Partition)
	Resume(partitions []Partition)
	// Paused returns the paused partitions.
	Paused() []Partition
	// Assignment returns the partitions currently assigned.
	Assignment() []Partition
	// Commit commits offsets (the next offset to consume per partition) before it
	// returns.
	Commit(ctx context.Context, offsets map[Partition]int64) error
	// Close leaves the group and releases the consumer.
	Close() error
}

// RebalanceCallbacks are called when the assignment changes. Under an eager protocol
// every revocation revokes the whole assignment; under a cooperative one only the
// partitions that move. A revoked partition is released to the group only after
// OnRevoke returns, so OnRevoke may commit its final offsets.
//
// OnLost is called instead of OnRevoke when the partitions were taken away without a
// rebalance (the group session expired, the member was fenced): they may already
// belong to another member, so their offsets must not be committed. A consumer calls
// OnRevoke when OnLost is nil.
type RebalanceCallbacks struct {
	OnAssign func(added []Partition)
	OnRevoke func(revoked []Partition)
	OnLost   func(lost []Partition)
}

// Fetcher is implemented by consumers that can read one message again by position.
// The dead-letter queue uses it for messages it no longer buffers.
type Fetcher[T any] interface {
	Fetch(ctx context.Context, pos Position) (Message[T], error)
}

// DLQProducer sends invalid messages to a dead-letter queue. msg is the raw message
// as it was read from the broker; inv says where it was read and why it is invalid.
type DLQProducer[T any] interface {
	Produce(ctx context.Context, msg Message[T], inv *InvalidMessageError) *Delivery
}
