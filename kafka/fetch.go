package kafka

// Fetch may be called from any goroutine, concurrently with Poll. fetchMu guards
// fetcher, created on first use, and serialises Fetch calls; beginCall refuses a
// Fetch once Close has begun and counts it on calls, so that Close reads fetcher
// and closes it only when no Fetch is running.

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/creekstream/creek/processor"
)

// ErrOffsetGone is returned by Fetch when no message exists at the offset any
// more, for instance after compaction.
var ErrOffsetGone = errors.New("kafka: no message at offset")

// Fetch reads the message at pos again, independently of the group's readers
// and of Pause. It waits at most until ctx is done.
func (c *Consumer) Fetch(ctx context.Context, pos processor.Position) (processor.Message[processor.KafkaPayload], error) {
	var none processor.Message[processor.KafkaPayload]
	if err := c.beginCall(); err != nil {
		return none, err
	}
	defer c.calls.Done()
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	if c.fetcher == nil {
		f, err := sarama.NewConsumerFromClient(c.client)
		if err != nil {
			return none, fmt.Errorf("kafka: fetch %s offset %d: %w", pos.Partition, pos.Offset, err)
		}
		c.fetcher = f
	}
	pc, err := c.fetcher.ConsumePartition(pos.Partition.Topic, pos.Partition.Index, pos.Offset)
	if err != nil {
		return none, fmt.Errorf("kafka: fetch %s offset %d: %w", pos.Partition, pos.Offset, err)
	}
	defer func() {
		// Close drains what the reader fetched ahead; its errors concern reads
		// past the one message wanted.
		_ = pc.Close()
	}()
	select {
	case m := <-pc.Messages():
		if m.Offset != pos.Offset {
			return none, fmt.Errorf("kafka: fetch %s offset %d (next is %d): %w", pos.Partition, pos.Offset, m.Offset, ErrOffsetGone)
		}
		return toMessage(pos.Partition, m), nil
	case cerr := <-pc.Errors():
		return none, fmt.Errorf("kafka: fetch %s offset %d: %w", pos.Partition, pos.Offset, cerr)
	case <-ctx.Done():
		return none, fmt.Errorf("kafka: fetch %s offset %d: %w", pos.Partition, pos.Offset, ctx.Err())
	}
}
