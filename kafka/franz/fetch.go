package franz

// Fetch may be called from any goroutine, concurrently with Poll and with other
// Fetches. Each call owns the short-lived client it creates and closes it before
// returning; beginCall refuses a Fetch once Close has begun and counts it on
// calls.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/processor"
)

// Fetch reads the message at pos again, independently of the group and of Pause,
// with a direct consumer of that one partition. It waits at most until ctx is done
// or FetchTimeout has passed, so an offset at the partition's end is waited for
// that long. If no message exists at the offset (it was deleted or compacted
// away, or is past the end) the error wraps kafka.ErrOffsetGone.
func (c *Consumer) Fetch(ctx context.Context, pos processor.Position) (processor.Message[processor.KafkaPayload], error) {
	var none processor.Message[processor.KafkaPayload]
	if err := c.beginCall(); err != nil {
		return none, err
	}
	defer c.calls.Done()
	fail := func(err error) (processor.Message[processor.KafkaPayload], error) {
		return none, fmt.Errorf("franz: fetch %s offset %d: %w", pos.Partition, pos.Offset, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.FetchTimeout)
	defer cancel()
	opts := clientOpts(c.cfg.ClientOptions, c.cfg.Brokers, c.cfg.ClientID, c.cfg.TLS, c.cfg.SASL, c.cfg.Logger)
	opts = append(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			pos.Partition.Topic: {pos.Partition.Index: kgo.NewOffset().At(pos.Offset)},
		}),
		// An offset that is gone resets to the oldest one, which then differs.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fail(err)
	}
	defer cl.Close()
	for {
		fetches := cl.PollRecords(ctx, 1)
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) {
			if ferr == nil {
				ferr = err
			}
		})
		if ferr != nil {
			return fail(ferr)
		}
		recs := fetches.Records()
		if len(recs) == 0 {
			continue
		}
		r := recs[0]
		switch {
		case r.Offset < pos.Offset:
			// Out of range: kgo reset to the oldest offset.
			return fail(fmt.Errorf("the offset is past the partition's end: %w", kafka.ErrOffsetGone))
		case r.Offset > pos.Offset:
			return fail(fmt.Errorf("next is %d: %w", r.Offset, kafka.ErrOffsetGone))
		}
		return toMessage(pos.Partition, r), nil
	}
}
