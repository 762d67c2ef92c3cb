package kafka

// The group side of Consumer. Everything here runs on sarama's goroutines or on
// the two Subscribe starts: consume, which calls group.Consume until the consumer
// closes, and drainErrors. sarama calls Setup and Cleanup once per session and
// ConsumeClaim on a goroutine of its own per claimed partition, concurrently.
//
// None of this touches the loop's poller. It reaches the loop only through ev,
// posting assignments and revocations while it holds mu (which guards session,
// announced, revoking and nextEpoch), so that they keep their order, and a fatal
// error; and through the channels: readers send batches on queue, take slices
// back from free and stop waiting for the loop when closing is closed.
// Readers also put their claims in marks, which has a lock of its own (lag.go).

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka/internal/topicwait"
	"github.com/creekstream/creek/processor"
)

// consume keeps the member in the group: sarama's Consume returns at every eager
// rebalance and on errors, and is called again until the consumer closes.
func (c *Consumer) consume(ctx context.Context, topics []string) {
	defer close(c.consumeEnd)
	h := handler{c}
	var wait topicwait.Wait
	for {
		err := c.group.Consume(ctx, topics, h)
		if ctx.Err() != nil || errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return
		}
		if err == nil {
			continue
		}
		switch {
		case errors.Is(err, sarama.ErrInvalidTopic):
			// The broker's rules can be stricter than ValidateTopic's, and a
			// name it refuses now it refuses for ever: retrying would only log.
			c.fail(fmt.Errorf("kafka: the broker refuses a topic of %v as invalid: %w", topics, err))
			return
		case fatal(err):
			c.fail(fmt.Errorf("kafka: consume %v: %w", topics, err))
			return
		case errors.Is(err, sarama.ErrUnknownTopicOrPartition):
			if !c.waitingForTopics.Swap(true) {
				// A session came between, so this is a new wait (a topic
				// deleted while consumed): it is logged from its own start.
				wait = topicwait.Wait{}
			}
			wait.Missing(c.log, c.cfg.MissingTopicLogInterval, c.missingTopics(topics))
		default:
			c.log.Warn("consumer group session failed; rejoining", zap.Strings("topics", topics), zap.Error(err))
		}
		t := time.NewTimer(c.retryBackoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// retryBackoff is the default pause between a failed Consume and the next.
const retryBackoff = time.Second

// missingTopics returns the topics the client's metadata does not know, which
// after a refresh that found some unknown are the ones the cluster lacks.
func (c *Consumer) missingTopics(topics []string) []string {
	known, err := c.client.Topics()
	if err != nil {
		return topics
	}
	var missing []string
	for _, t := range topics {
		if !slices.Contains(known, t) {
			missing = append(missing, t)
		}
	}
	if len(missing) == 0 {
		// Created between the refresh and now: the next attempt joins.
		return topics
	}
	return missing
}

// fatal reports errors that rejoining cannot cure.
func fatal(err error) bool {
	return errors.Is(err, sarama.ErrTopicAuthorizationFailed) ||
		errors.Is(err, sarama.ErrGroupAuthorizationFailed) ||
		errors.Is(err, sarama.ErrInconsistentGroupProtocol) ||
		errors.Is(err, sarama.ErrFencedInstancedId)
}

func (c *Consumer) fail(err error) { c.ev.Fail(err) }

// drainErrors logs what the group reports in the background; sarama drops errors
// nobody reads, so they would otherwise vanish.
func (c *Consumer) drainErrors() {
	defer close(c.errorsEnd)
	for err := range c.group.Errors() {
		c.log.Warn("consumer group error", zap.Error(err))
	}
}

// handler is the sarama.ConsumerGroupHandler of a Consumer.
type handler struct{ c *Consumer }

func (h handler) Setup(sess sarama.ConsumerGroupSession) error {
	if h.c.waitingForTopics.Swap(false) {
		h.c.log.Info(topicwait.Over)
	}
	h.c.mu.Lock()
	h.c.session = sess
	h.c.mu.Unlock()
	return nil
}

// Cleanup revokes what the session's readers did not, such as partitions whose
// reader never started, before the session's partitions go.
func (h handler) Cleanup(sess sarama.ConsumerGroupSession) error {
	h.c.release(processor.Partition{}, true, sess.Context())
	h.c.mu.Lock()
	if h.c.session == sess {
		h.c.session = nil
	}
	h.c.mu.Unlock()
	return nil
}

func (h handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	c := h.c
	p := processor.Partition{Topic: claim.Topic(), Index: claim.Partition()}
	epoch := c.announce(sess, p)
	c.marks.Claim(p, epoch, claim.InitialOffset(), claim.HighWaterMarkOffset)
	defer c.marks.Release(p, epoch)
	msgs := claim.Messages()
	done := sess.Context().Done()
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				// The claim was revoked: only this partition moves under the
				// cooperative protocol, the whole assignment under an eager one.
				// A session that ended closes it too.
				c.release(p, !c.cooperative || sess.Context().Err() != nil, sess.Context())
				return nil
			}
			b, open := c.fill(m, msgs)
			select {
			case c.queue <- batch{P: p, Epoch: epoch, Recs: b}:
			case <-done:
				c.release(p, true, sess.Context())
				return nil
			case <-c.closing:
				return nil
			}
			if !open {
				c.release(p, !c.cooperative || sess.Context().Err() != nil, sess.Context())
				return nil
			}
		case <-done:
			c.release(p, true, sess.Context())
			return nil
		case <-c.closing:
			return nil
		}
	}
}

// fill returns first and whatever else msgs has ready, up to batchSize messages,
// without waiting. open is false if msgs was found closed.
func (c *Consumer) fill(first *sarama.ConsumerMessage, msgs <-chan *sarama.ConsumerMessage) (b []*sarama.ConsumerMessage, open bool) {
	select {
	case b = <-c.free:
	default:
		b = make([]*sarama.ConsumerMessage, 0, c.batchSize)
	}
	b = append(b, first)
	for len(b) < c.batchSize {
		select {
		case m, ok := <-msgs:
			if !ok {
				return b, false
			}
			b = append(b, m)
		default:
			return b, true
		}
	}
	return b, true
}

// announce queues an assignment event for every partition of the session not yet
// announced and returns p's epoch. The first reader of a generation announces the
// whole generation, so the loop sees one OnAssign per rebalance.
func (c *Consumer) announce(sess sarama.ConsumerGroupSession, p processor.Partition) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch, ok := c.announced[p]; ok {
		return epoch
	}
	added := make(map[processor.Partition]uint64)
	add := func(q processor.Partition) {
		if _, ok := c.announced[q]; ok {
			return
		}
		c.nextEpoch++
		added[q] = c.nextEpoch
		c.announced[q] = c.nextEpoch
		// A revocation of an earlier claim that timed out waiting is over.
		delete(c.revoking, q)
	}
	add(p)
	// sarama shares the claims map with its own goroutines: read it only.
	for topic, indexes := range sess.Claims() {
		for _, i := range indexes {
			add(processor.Partition{Topic: topic, Index: i})
		}
	}
	c.ev.Assign(added)
	return c.announced[p]
}

// sessionLost reports whether the session whose context is ctx ended because
// the member lost its place in the group rather than for a rebalance or Close:
// the coordinator no longer knows the member or its generation (the session
// timed out, or the member was fenced), or the heartbeat gave up on an
// unreachable coordinator. Its partitions may belong to another member by now.
func sessionLost(ctx context.Context) bool {
	cause := context.Cause(ctx)
	switch {
	case cause == nil,
		errors.Is(cause, context.Canceled),
		errors.Is(cause, sarama.ErrRebalanceInProgress),
		errors.Is(cause, sarama.ErrSessionPartitionCountChanged),
		errors.Is(cause, sarama.ErrSessionConsumeClaimExited):
		return false
	}
	return true
}

// release revokes p (or, with all, every announced partition), as lost if the
// session, whose context is sessCtx, was lost, and waits, at most
// RevokeTimeout, until the loop has run OnRevoke or OnLost for it.
func (c *Consumer) release(p processor.Partition, all bool, sessCtx context.Context) {
	lost := sessionLost(sessCtx)
	c.mu.Lock()
	rv := c.revoking[p]
	// moving is what this call waits for, for the log.
	moving := []processor.Partition{p}
	if rv == nil {
		moving = nil
		if all {
			moving = slices.Collect(maps.Keys(c.announced))
		} else if _, ok := c.announced[p]; ok {
			moving = []processor.Partition{p}
		}
		if len(moving) > 0 {
			if lost {
				c.log.Warn("kafka: group session lost", zap.Error(context.Cause(sessCtx)))
			}
			// A revocation the loop has not picked up yet takes these too.
			rv = c.ev.Revoke(moving, lost)
			for _, q := range moving {
				delete(c.announced, q)
				c.revoking[q] = rv
			}
		}
	}
	c.mu.Unlock()
	if rv == nil {
		return
	}
	t := time.NewTimer(c.cfg.RevokeTimeout)
	defer t.Stop()
	select {
	case <-rv.Done():
	case <-c.closing:
	case <-t.C:
		c.log.Warn("revoked partitions released before the processor handled the revocation; their uncommitted messages will be read again by the next owner",
			zap.Stringers("partitions", moving), zap.Duration("revoke_timeout", c.cfg.RevokeTimeout))
	}
}
