package franz

// The poll side of Consumer. Everything here runs on the processor's loop, the
// goroutine that calls Poll, and so do the RebalanceCallbacks it runs. That
// goroutine alone owns cb, subscribed, active, paused, held, ready and cur, which
// need no lock. What kgo's callbacks and the reader leave for it, pending and
// failure, it takes under mu in runEvents. Batches arrive on queue.

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/processor"
)

// Poll returns the next message, waiting at most timeout. Rebalance callbacks run
// inside it. ok is false when no message came in time.
func (c *Consumer) Poll(ctx context.Context, timeout time.Duration) (processor.Message[processor.KafkaPayload], bool, error) {
	var none processor.Message[processor.KafkaPayload]
	if !c.subscribed {
		return none, false, kafka.ErrNotSubscribed
	}
	if c.eventsPending.Load() {
		if err := c.runEvents(); err != nil {
			return none, false, err
		}
	}
	if r, ok := c.next(); ok {
		return toMessage(c.cur.p, r), true, nil
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
		if r, ok := c.next(); ok {
			return toMessage(c.cur.p, r), true, nil
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
			return none, false, kafka.ErrClosed
		}
	}
}

// Buffered returns how many messages Poll can hand out without waiting, unless a
// rebalance intervenes. The processor skips timing such polls.
func (c *Consumer) Buffered() int { return c.cur.remaining() }

// next returns the next record held locally, from the current batch, then from
// batches resumed after a pause, without touching a channel.
func (c *Consumer) next() (*kgo.Record, bool) {
	for {
		if c.cur.next < len(c.cur.recs) {
			r := c.cur.recs[c.cur.next]
			c.cur.recs[c.cur.next] = nil
			c.cur.next++
			return r, true
		}
		c.cur = batch{}
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
// delivered now. Batches of claims the loop no longer owns are dropped; those of
// paused partitions are held until Resume.
func (c *Consumer) take(b batch) {
	if epoch, ok := c.active[b.p]; !ok || epoch != b.epoch {
		// The reader stamps records only after the assignment event is queued,
		// so it may still be pending. An error stays pending and Poll returns it.
		_ = c.runEvents()
		if epoch, ok := c.active[b.p]; !ok || epoch != b.epoch {
			return
		}
	}
	if c.paused[b.p] {
		c.held[b.p] = append(c.held[b.p], b)
		return
	}
	c.cur = b
}

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

// runEvents applies pending assignment changes in the order they happened and
// runs the callbacks for them. It returns the consumer's fatal error, if any.
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
		if rv.lost {
			c.log.Warn("partitions lost; revoking them", zap.Stringers("partitions", rv.partitions))
		} else {
			c.log.Info("partitions revoked", zap.Stringers("partitions", rv.partitions))
		}
		if c.cb.OnRevoke != nil {
			c.cb.OnRevoke(rv.partitions)
		}
		var unpause map[string][]int32
		for _, p := range rv.partitions {
			if c.cur.p == p {
				c.cur = batch{}
			}
			if c.paused[p] {
				// kgo keeps partitions paused across rebalances; a later claim of
				// this partition starts unpaused, as the loop's state says.
				if unpause == nil {
					unpause = make(map[string][]int32)
				}
				unpause[p.Topic] = append(unpause[p.Topic], p.Index)
			}
			delete(c.active, p)
			delete(c.paused, p)
			delete(c.held, p)
		}
		c.ready = slices.DeleteFunc(c.ready, func(b batch) bool { return slices.Contains(rv.partitions, b.p) })
		if unpause != nil {
			c.client().ResumeFetchPartitions(unpause)
		}
		close(rv.done)
	}
	return failure
}

// client returns the group client; it is set once by Subscribe, on this goroutine.
func (c *Consumer) client() *kgo.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cl
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
		c.client().PauseFetchPartitions(byTopic)
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
		c.client().ResumeFetchPartitions(byTopic)
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
