package franz

// The consumer's side of the processor's lag gauges. marks holds the owned
// partitions (consumer.go claims and releases them with owned). The reader
// records the high watermark of every partition its fetches return, records or
// not; the refresher goroutine, which Subscribe starts and Close waits for, lists
// the owned partitions' newest offsets every refreshInterval, for partitions that
// are not fetched (paused, or waiting for the loop), and takes the group's
// committed offsets from kgo, which fetches them at every assignment. Watermarks
// answers from marks alone, on the loop.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka/internal/watermarks"
	"github.com/creekstream/creek/processor"
)

// Watermarks calls yield for every owned partition whose high watermark is known,
// with it and the group's committed offset as kgo last knew it (-1 if none, or not
// read yet: it is read at the first refresh after the assignment). It answers
// from memory, for the processor's consumer.lag and consumer.position_lag gauges;
// yield must not call the Consumer.
func (c *Consumer) Watermarks(yield func(p processor.Partition, highWatermark, committed int64)) {
	c.marks.Each(yield)
}

// refreshWatermarks runs until Close, refreshing marks.
func (c *Consumer) refreshWatermarks(cl *kgo.Client) {
	defer close(c.refreshEnd)
	interval := c.refreshInterval
	if interval == 0 {
		interval = watermarks.RefreshInterval
	}
	c.marks.Refresh(c.closing, interval, watermarks.RefreshTimeout, func(ctx context.Context, parts []processor.Partition) {
		c.listNewest(ctx, cl, parts)
		for topic, ps := range cl.CommittedOffsets() {
			for i, eo := range ps {
				c.marks.ObserveCommitted(processor.Partition{Topic: topic, Index: i}, eo.Offset)
			}
		}
	})
}

// listNewest asks for the newest offsets of parts with one ListOffsets request,
// which kgo splits among the partitions' leaders, and records them in marks. A
// failure is logged at debug level and retried at the next refresh.
func (c *Consumer) listNewest(ctx context.Context, cl *kgo.Client, parts []processor.Partition) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	topics := make(map[string]int)
	for _, p := range parts {
		i, ok := topics[p.Topic]
		if !ok {
			i = len(req.Topics)
			topics[p.Topic] = i
			t := kmsg.NewListOffsetsRequestTopic()
			t.Topic = p.Topic
			req.Topics = append(req.Topics, t)
		}
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = p.Index
		rp.Timestamp = -1 // the newest offset: the high watermark
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	for _, shard := range cl.RequestSharded(ctx, req) {
		if shard.Err != nil {
			c.log.Debug("franz: listing high watermarks for the lag gauges failed; retrying at the next refresh", zap.Error(shard.Err))
			continue
		}
		resp, ok := shard.Resp.(*kmsg.ListOffsetsResponse)
		if !ok {
			continue
		}
		for _, t := range resp.Topics {
			for _, rp := range t.Partitions {
				if kerr.ErrorForCode(rp.ErrorCode) != nil {
					continue
				}
				offset := rp.Offset
				if resp.Version == 0 {
					if len(rp.OldStyleOffsets) != 1 {
						continue
					}
					offset = rp.OldStyleOffsets[0]
				}
				c.marks.Observe(processor.Partition{Topic: t.Topic, Index: rp.Partition}, offset)
			}
		}
	}
}
