package kafka

// The consumer's side of the processor's lag gauges. Each claim's reader puts the
// claim in marks when it starts and takes it out when it ends (consumer_group.go);
// sarama keeps the claim's high watermark current from its fetch responses, and
// the refresher goroutine, which Subscribe starts and Close waits for, lists the
// claimed partitions' newest offsets every refreshInterval, for partitions that
// are not fetched (paused, or waiting for the loop). Watermarks answers from marks
// alone, on the loop.

import (
	"context"
	"errors"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka/internal/watermarks"
	"github.com/creekstream/creek/processor"
)

// Watermarks calls yield for every claimed partition with its latest known high
// watermark and the group's committed offset the claim started from (-1 if the
// group had none). It answers from memory, for the processor's consumer.lag and
// consumer.position_lag gauges; yield must not call the Consumer.
func (c *Consumer) Watermarks(yield func(p processor.Partition, highWatermark, committed int64)) {
	c.marks.Each(yield)
}

// refreshWatermarks runs until Close, refreshing marks.
func (c *Consumer) refreshWatermarks() {
	defer close(c.refreshEnd)
	interval := c.refreshInterval
	if interval == 0 {
		interval = watermarks.RefreshInterval
	}
	c.marks.Refresh(c.closing, interval, watermarks.RefreshTimeout, c.listNewest)
}

// listNewest asks the leaders of parts for their newest offsets, one ListOffsets
// request per leader, and records them in marks. sarama's requests take no
// context: each is bounded by Sarama.Net's timeouts, and ctx is checked between
// them. A failure is logged at debug level and retried at the next refresh; a
// partition whose leader seems to have moved has its topic's metadata refreshed.
func (c *Consumer) listNewest(ctx context.Context, parts []processor.Partition) {
	byLeader := make(map[*sarama.Broker][]processor.Partition)
	stale := make(map[string]bool)
	for _, p := range parts {
		b, err := c.client.Leader(p.Topic, p.Index)
		if err != nil {
			stale[p.Topic] = true
			continue
		}
		byLeader[b] = append(byLeader[b], p)
	}
	version := c.client.Config().Version
	for b, ps := range byLeader {
		if ctx.Err() != nil {
			return
		}
		req := sarama.NewOffsetRequest(version)
		for _, p := range ps {
			req.AddBlock(p.Topic, p.Index, sarama.OffsetNewest, 1)
		}
		resp, err := b.GetAvailableOffsets(req)
		if err != nil {
			c.log.Debug("kafka: listing high watermarks for the lag gauges failed; retrying at the next refresh",
				zap.Int32("broker", b.ID()), zap.Error(err))
			continue
		}
		for _, p := range ps {
			block := resp.GetBlock(p.Topic, p.Index)
			switch {
			case block == nil:
			case !errors.Is(block.Err, sarama.ErrNoError):
				stale[p.Topic] = true
			case len(block.Offsets) == 1:
				c.marks.Observe(p, block.Offsets[0])
			}
		}
	}
	if len(stale) > 0 && ctx.Err() == nil {
		topics := make([]string, 0, len(stale))
		for t := range stale {
			topics = append(topics, t)
		}
		if err := c.client.RefreshMetadata(topics...); err != nil {
			c.log.Debug("kafka: metadata refresh for the lag gauges failed", zap.Strings("topics", topics), zap.Error(err))
		}
	}
}
