package kafka

// Commit may be called from any goroutine, concurrently with Poll and with other
// Commits. It reads only fields NewConsumer set and never changes, and session
// under mu; beginCall, under mu too, refuses it once Close has begun and counts it
// on calls, so that Close waits for the request before closing the commits client.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/creekstream/creek/processor"
)

// commitAttempts bounds how often Commit looks the coordinator up again after it
// moved or was unreachable.
const commitAttempts = 3

// Commit commits offsets, the next offset to consume per partition, for the
// group's current generation and returns the broker's answer. It gives up when
// ctx is done; a request already sent then finishes in the background within
// sarama's network timeouts.
func (c *Consumer) Commit(ctx context.Context, offsets map[processor.Partition]int64) error {
	if len(offsets) == 0 {
		return nil
	}
	if err := c.beginCall(); err != nil {
		return err
	}
	c.mu.Lock()
	sess := c.session
	c.mu.Unlock()
	if sess == nil {
		c.calls.Done()
		return ErrNoSession
	}
	req := c.commitRequest(sess, offsets)
	result := make(chan error, 1)
	go func() {
		defer c.calls.Done()
		result <- c.sendCommit(ctx, req)
	}()
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return fmt.Errorf("kafka: commit %v: %w", offsets, ctx.Err())
	}
}

// commitRequest builds the OffsetCommit request sarama's own offset manager
// would send, at the same protocol version. Committing directly rather than
// through MarkOffset lets Commit return the broker's error to its caller.
func (c *Consumer) commitRequest(sess sarama.ConsumerGroupSession, offsets map[processor.Partition]int64) *sarama.OffsetCommitRequest {
	v := c.client.Config().Version
	req := &sarama.OffsetCommitRequest{
		Version:                 3,
		ConsumerGroup:           c.cfg.GroupID,
		ConsumerID:              sess.MemberID(),
		ConsumerGroupGeneration: sess.GenerationID(),
		RetentionTime:           -1,
	}
	switch {
	case v.IsAtLeast(sarama.V2_4_0_0):
		req.Version = 8
	case v.IsAtLeast(sarama.V2_3_0_0):
		req.Version = 7
	case v.IsAtLeast(sarama.V2_1_0_0):
		req.Version = 6
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 4
	}
	if id := c.client.Config().Consumer.Group.InstanceId; id != "" && req.Version >= 7 {
		req.GroupInstanceId = &id
	}
	for p, off := range offsets {
		req.AddBlockWithLeaderEpoch(p.Topic, p.Index, off, -1, 0, "")
	}
	return req
}

func (c *Consumer) sendCommit(ctx context.Context, req *sarama.OffsetCommitRequest) error {
	var err error
	for attempt := range commitAttempts {
		if attempt > 0 {
			if err := c.commits.RefreshCoordinator(c.cfg.GroupID); err != nil {
				return fmt.Errorf("kafka: commit: find coordinator of %s: %w", c.cfg.GroupID, err)
			}
		}
		var coordinator *sarama.Broker
		coordinator, err = c.commits.Coordinator(c.cfg.GroupID)
		if err != nil {
			return fmt.Errorf("kafka: commit: find coordinator of %s: %w", c.cfg.GroupID, err)
		}
		var resp *sarama.OffsetCommitResponse
		resp, err = coordinator.CommitOffset(req)
		if err == nil {
			err = responseError(resp)
		}
		if err == nil || !coordinatorMoved(err) || ctx.Err() != nil {
			break
		}
		if attempt < commitAttempts-1 {
			t := time.NewTimer(c.client.Config().Metadata.Retry.Backoff)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
	if err != nil {
		return fmt.Errorf("kafka: commit for group %s: %w", c.cfg.GroupID, err)
	}
	return nil
}

// coordinatorMoved reports errors after which the coordinator must be found
// again; a network error closes the connection, which sarama reopens on next use.
func coordinatorMoved(err error) bool {
	var kerr sarama.KError
	if !errors.As(err, &kerr) {
		return true
	}
	return kerr == sarama.ErrNotCoordinatorForConsumer || kerr == sarama.ErrConsumerCoordinatorNotAvailable ||
		kerr == sarama.ErrOffsetsLoadInProgress
}

// responseError returns the first partition error of resp, naming the partition.
func responseError(resp *sarama.OffsetCommitResponse) error {
	for topic, parts := range resp.Errors {
		for index, kerr := range parts {
			if kerr != sarama.ErrNoError {
				return fmt.Errorf("partition %s: %w", processor.Partition{Topic: topic, Index: index}, kerr)
			}
		}
	}
	return nil
}
