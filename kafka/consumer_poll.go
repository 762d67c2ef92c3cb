package kafka

// The poll side of Consumer. Everything here runs on the processor's loop, the
// goroutine that calls Poll, and so do the RebalanceCallbacks it runs. The loop
// alone owns poller (package poll's Poller: the assignment, pauses and batches as
// the loop knows them) and subscribed, which need no lock. What sarama's
// goroutines leave for it arrives through ev; released, which runs once the
// callback of a revocation has, clears revoking under mu. Messages arrive on
// queue; their slices go back on free.

import (
	"context"
	"time"

	"github.com/IBM/sarama"

	"github.com/creekstream/creek/kafka/internal/poll"
	"github.com/creekstream/creek/processor"
)

// Poll returns the next message, waiting at most timeout. Rebalance callbacks run
// inside it. ok is false when no message came in time.
func (c *Consumer) Poll(ctx context.Context, timeout time.Duration) (processor.Message[processor.KafkaPayload], bool, error) {
	if !c.subscribed {
		return processor.Message[processor.KafkaPayload]{}, false, ErrNotSubscribed
	}
	if m, p, ok := c.poller.Ready(); ok {
		return toMessage(p, m), true, nil
	}
	m, p, ok, err := c.poller.Poll(ctx, timeout)
	if !ok {
		return processor.Message[processor.KafkaPayload]{}, false, err
	}
	return toMessage(p, m), true, nil
}

// PollRun is Poll for a run of messages: it appends to into, up to its capacity,
// messages of one partition in offset order, waiting at most timeout for the
// first, and returns the extended slice, which is into itself when none came.
// Rebalance callbacks run inside it. The processor takes a partition's run at
// once where it would otherwise poll each message.
func (c *Consumer) PollRun(ctx context.Context, timeout time.Duration, into []processor.Message[processor.KafkaPayload]) ([]processor.Message[processor.KafkaPayload], error) {
	if !c.subscribed {
		return into, ErrNotSubscribed
	}
	return c.poller.AppendRun(ctx, timeout, into, toMessage)
}

// Buffered returns how many messages Poll can hand out without waiting, unless a
// rebalance intervenes. The processor skips timing such polls.
func (c *Consumer) Buffered() int { return c.poller.Buffered() }

// recycle hands a batch's slice, emptied, back to the readers.
func (c *Consumer) recycle(msgs []*sarama.ConsumerMessage) {
	select {
	case c.free <- msgs:
	default:
	}
}

// released forgets rv once the loop has handled it, unless a later revocation of
// the same partition replaced it.
func (c *Consumer) released(rv *poll.Revocation, _ map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, r := range c.revoking {
		if r == rv {
			delete(c.revoking, p)
		}
	}
}

func toMessage(p processor.Partition, m *sarama.ConsumerMessage) processor.Message[processor.KafkaPayload] {
	payload := processor.KafkaPayload{Key: m.Key, Value: m.Value}
	if len(m.Headers) > 0 {
		payload.Headers = make([]processor.Header, len(m.Headers))
		for i, h := range m.Headers {
			payload.Headers[i] = processor.Header{Key: string(h.Key), Value: h.Value}
		}
	}
	return processor.NewBrokerMessage(payload, p, m.Offset, m.Timestamp)
}

// Pause stops delivery and fetching of partitions of the current assignment
// without leaving the group.
func (c *Consumer) Pause(partitions []processor.Partition) { c.poller.Pause(partitions) }

// Resume undoes Pause. Messages read before the pause took effect are delivered
// first.
func (c *Consumer) Resume(partitions []processor.Partition) { c.poller.Resume(partitions) }

// Paused returns the paused partitions, sorted.
func (c *Consumer) Paused() []processor.Partition { return c.poller.Paused() }

// Assignment returns the partitions assigned as of the last callback, sorted.
func (c *Consumer) Assignment() []processor.Partition { return c.poller.Assignment() }
