package franz

// Commit may be called from any goroutine, concurrently with Poll and with other
// Commits. It reads cl and owned under mu; beginCall, under mu too, refuses it
// once Close has begun and counts it on calls, so that Close waits for the request
// before it closes the client.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/processor"
)

// Commit commits offsets, the next offset to consume per partition, exactly as
// given, in the group's current generation, and returns the broker's answer. It
// refuses partitions the member does not own (ErrNotOwned), such as lost ones. It
// gives up when ctx is done.
func (c *Consumer) Commit(ctx context.Context, offsets map[processor.Partition]int64) error {
	if len(offsets) == 0 {
		return nil
	}
	if err := c.beginCall(); err != nil {
		return err
	}
	defer c.calls.Done()
	c.mu.Lock()
	cl := c.cl
	var notOwned []processor.Partition
	for p := range offsets {
		if _, ok := c.owned[p]; !ok {
			notOwned = append(notOwned, p)
		}
	}
	c.mu.Unlock()
	if cl == nil {
		return kafka.ErrNotSubscribed
	}
	if len(notOwned) > 0 {
		processor.SortPartitions(notOwned)
		return fmt.Errorf("franz: commit %v for group %s: %v: %w", offsets, c.cfg.GroupID, notOwned, ErrNotOwned)
	}
	req := make(map[string]map[int32]kgo.EpochOffset)
	for p, off := range offsets {
		if req[p.Topic] == nil {
			req[p.Topic] = make(map[int32]kgo.EpochOffset)
		}
		req[p.Topic][p.Index] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	var rerr error
	cl.CommitOffsetsSync(ctx, req, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			rerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, part := range t.Partitions {
				if err := kerr.ErrorForCode(part.ErrorCode); err != nil && rerr == nil {
					rerr = fmt.Errorf("partition %s: %w", processor.Partition{Topic: t.Topic, Index: part.Partition}, err)
				}
			}
		}
	})
	if rerr != nil {
		return fmt.Errorf("franz: commit for group %s: %w", c.cfg.GroupID, rerr)
	}
	return nil
}
