package kafka

// The poll side of Consumer. Everything here runs on the processor's loop, the
// goroutine that calls Poll, and so do the RebalanceCallbacks it runs. That
// goroutine alone owns cb, subscribed, active, paused, held, ready and cur, which
// need no lock. What sarama's goroutines leave for it, pending and failure, it
// takes under mu in runEvents, which also clears revoking for the partitions whose
// OnRevoke has run. Messages arrive on queue; their slices go back on free.

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/creekstream/creek/processor"
)

// Poll returns the next message, waiting at most timeout. Rebalance callbacks run
// inside it. ok is false when no message came in time.
func (c *Consumer) Poll(ctx context.Context, timeout time.Duration) (processor.Message[processor.KafkaPayload], bool, error) {
	var none processor.Message[processor.KafkaPayload]
	if !c.subscribed {
		return none, false, ErrNotSubscribed
	}
	if c.eventsPending.Load() {
		if err := c.runEvents(); err != nil {
			return none, false, err
		}
	}
	if m, ok := c.next(); ok {
		return toMessage(c.cur.p, m), true, nil
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := c.runEvents(); err != nil {
			return none, false, err
		}
		if m, ok := c.next(); ok {
			return toMessage(c.cur.p, m), true, nil
		}
		select {
		case b := <-c.queue:
			c.take(b)
			continue
		default:
		}
		if timer == nil {
			timer = time.NewTimer(timeout)
		}
		select {
		case b := <-c.queue:
			c.take(b)
		case <-c.wake:
		case <-timer.C:
			return none, false, c.runEvents()
		case <-ctx.Done():
			return none, false, ctx.Err()
		case <-c.closing:
			return none, false, ErrClosed
		}
	}
}

// Buffered returns how many messages Poll can hand out without waiting, unless a
// rebalance intervenes. The processor skips timing such polls.
func (c *Consumer) Buffered() int { return c.cur.remaining() }

// next returns the next message held locally, from the current batch, then from
// batches resumed after a pause, without touching a channel.
func (c *Consumer) next() (*sarama.ConsumerMessage, bool) {
	for {
		if c.cur.next < len(c.cur.msgs) {
			m := c.cur.msgs[c.cur.next]
			c.cur.msgs[c.cur.next] = nil
			c.cur.next++
			return m, true
		}
		c.dropCur()
		if len(c.ready) == 0 {
			return nil, false
		}
		b := c.ready[0]
		c.ready[0] = batch{}
		c.ready = c.ready[1:]
		c.take(b)
	}
}

// take makes b the current batch, which must be used up, if its partition may be
// delivered now. Batches of partitions the loop no longer owns are dropped; those
// of paused partitions are held until Resume.
func (c *Consumer) take(b batch) {
	if epoch, ok := c.active[b.p]; !ok || epoch != b.epoch {
		// A reader announces its partition before it sends anything, so the
		// announcement may still be pending; a revocation can be pending too. An
		// error stays pending and Poll returns it.
		_ = c.runEvents()
		if epoch, ok := c.active[b.p]; !ok || epoch != b.epoch {
			c.recycle(b.msgs)
			return
		}
	}
	if c.paused[b.p] {
		c.held[b.p] = append(c.held[b.p], b)
		return
	}
	c.cur = b
}

// dropCur gives up what is left of the current batch and reuses its slice.
func (c *Consumer) dropCur() {
	if c.cur.msgs != nil {
		c.recycle(c.cur.msgs)
	}
	c.cur = batch{}
}

// recycle hands a batch's slice back to the readers once nothing refers to it.
func (c *Consumer) recycle(msgs []*sarama.ConsumerMessage) {
	clear(msgs)
	select {
	case c.free <- msgs[:0]:
	default:
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

// runEvents applies pending assignment changes in the order they happened and
// runs the callbacks for them. It returns the group's fatal error, if any.
func (c *Consumer) runEvents() error {
	c.mu.Lock()
	events := c.pending
	c.pending = nil
	failure := c.failure
	c.eventsPending.Store(failure != nil)
	c.mu.Unlock()
	for _, ev := range events {
		if ev.assign != nil {
			maps.Copy(c.active, ev.assign)
			added := sortedPartitions(maps.Keys(ev.assign))
			c.log.Info("partitions assigned", zap.Stringers("partitions", added))
			if c.cb.OnAssign != nil {
				c.cb.OnAssign(added)
			}
			continue
		}
		rv := ev.revoke
		processor.SortPartitions(rv.partitions)
		c.log.Info("partitions revoked", zap.Stringers("partitions", rv.partitions))
		if c.cb.OnRevoke != nil {
			c.cb.OnRevoke(rv.partitions)
		}
		c.mu.Lock()
		for _, p := range rv.partitions {
			if c.cur.p == p {
				c.dropCur()
			}
			delete(c.active, p)
			delete(c.paused, p)
			delete(c.held, p)
			if c.revoking[p] == rv {
				delete(c.revoking, p)
			}
		}
		c.mu.Unlock()
		close(rv.done)
	}
	return failure
}

// Pause stops delivery and fetching of partitions of the current assignment
// without leaving the group.
func (c *Consumer) Pause(partitions []processor.Partition) {
	byTopic := make(map[string][]int32)
	for _, p := range partitions {
		if _, ok := c.active[p]; ok && !c.paused[p] {
			if c.cur.p == p && c.cur.remaining() > 0 {
				c.held[p] = append(c.held[p], c.cur)
				c.cur = batch{}
			}
			c.paused[p] = true
			byTopic[p.Topic] = append(byTopic[p.Topic], p.Index)
		}
	}
	if len(byTopic) > 0 {
		c.group.Pause(byTopic)
	}
}

// Resume undoes Pause. Messages read before the pause took effect are delivered
// first.
func (c *Consumer) Resume(partitions []processor.Partition) {
	byTopic := make(map[string][]int32)
	for _, p := range partitions {
		if !c.paused[p] {
			continue
		}
		delete(c.paused, p)
		byTopic[p.Topic] = append(byTopic[p.Topic], p.Index)
		c.ready = append(c.ready, c.held[p]...)
		delete(c.held, p)
	}
	if len(byTopic) > 0 {
		c.group.Resume(byTopic)
	}
}

// Paused returns the paused partitions, sorted.
func (c *Consumer) Paused() []processor.Partition { return sortedPartitions(maps.Keys(c.paused)) }

// Assignment returns the partitions assigned as of the last callback, sorted.
func (c *Consumer) Assignment() []processor.Partition { return sortedPartitions(maps.Keys(c.active)) }

func sortedPartitions(seq func(func(processor.Partition) bool)) []processor.Partition {
	ps := slices.Collect(seq)
	processor.SortPartitions(ps)
	return ps
}
