package franz

// The poll side of Consumer. Everything here runs on the processor's loop, the
// goroutine that calls Poll, and so do the RebalanceCallbacks it runs. The loop
// alone owns poller (package poll's Poller: the assignment, pauses and batches as
// the loop knows them) and subscribed, which need no lock. What kgo's callbacks
// and the reader leave for it arrives through ev; batches arrive on queue.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/internal/poll"
	"github.com/creekstream/creek/processor"
)

// Poll returns the next message, waiting at most timeout. Rebalance callbacks run
// inside it. ok is false when no message came in time.
func (c *Consumer) Poll(ctx context.Context, timeout time.Duration) (processor.Message[processor.KafkaPayload], bool, error) {
	if !c.subscribed {
		return processor.Message[processor.KafkaPayload]{}, false, kafka.ErrNotSubscribed
	}
	if m, _, ok := c.poller.Ready(); ok {
		return m, true, nil
	}
	m, _, ok, err := c.poller.Poll(ctx, timeout)
	if !ok {
		return processor.Message[processor.KafkaPayload]{}, false, err
	}
	return m, true, nil
}

// PollRun is Poll for a run of messages: it returns up to cap(into) messages of
// one partition in offset order, waiting at most timeout for the first. The run
// is the consumer's own slice, not into, and is valid until the next Poll or
// PollRun; it is empty when none came. Rebalance callbacks run inside it. The
// processor takes a partition's run at once where it would otherwise poll each
// message.
func (c *Consumer) PollRun(ctx context.Context, timeout time.Duration, into []processor.Message[processor.KafkaPayload]) ([]processor.Message[processor.KafkaPayload], error) {
	if !c.subscribed {
		return into, kafka.ErrNotSubscribed
	}
	run, err := c.poller.Run(ctx, timeout, cap(into))
	if len(run) == 0 {
		return into, err
	}
	return run, err
}

// Buffered returns how many messages Poll can hand out without waiting, unless a
// rebalance intervenes. The processor skips timing such polls.
func (c *Consumer) Buffered() int { return c.poller.Buffered() }

func toMessage(p processor.Partition, r *kgo.Record) processor.Message[processor.KafkaPayload] {
	payload := processor.KafkaPayload{Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		payload.Headers = make([]processor.Header, len(r.Headers))
		for i, h := range r.Headers {
			payload.Headers[i] = processor.Header{Key: h.Key, Value: h.Value}
		}
	}
	return processor.NewBrokerMessage(payload, p, r.Offset, r.Timestamp)
}

// released runs once the loop has handled a revocation. kgo keeps partitions
// paused across rebalances; a later claim of a partition starts unpaused, as the
// loop's state says, so the revoked ones that were paused are resumed.
func (c *Consumer) released(_ *poll.Revocation, paused map[string][]int32) {
	if paused != nil {
		c.client().ResumeFetchPartitions(paused)
	}
}

// client returns the group client; it is set once by Subscribe, on this goroutine.
func (c *Consumer) client() *kgo.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cl
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
