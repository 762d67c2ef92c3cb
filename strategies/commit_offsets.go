package strategies

import (
	"context"
	"fmt"
	"time"

	"github.com/creekstream/creek/processor"
)

// latencyInterval is how often CommitOffsets records consumer.latency: one sample a
// second describes the lag well and keeps the metric off the per-message path.
const latencyInterval = time.Second

// latencyStride is how many messages may pass between clock readings once that many
// came since the last latency sample. Reading the clock for every message cost more
// than staging it; this way a high rate reads it every latencyStride messages, and a
// rate below latencyStride a second, where the reading costs nothing that matters,
// still reads it for every message.
const latencyStride = 16

// CommitOffsets is the terminal step of a chain: it hands every message's offsets to
// the processor's commit function. Filtered messages are committed too, which is how
// the offsets of dropped messages move on.
type CommitOffsets[T any] struct {
	commit processor.CommitFunc
	opts   options
	// lastLatency is when consumer.latency was last recorded, and sinceLatency the
	// messages since.
	lastLatency  time.Time
	sinceLatency int
	terminated   bool
}

// NewCommitOffsets returns a CommitOffsets that stages offsets through commit.
func NewCommitOffsets[T any](commit processor.CommitFunc, opts ...Option) *CommitOffsets[T] {
	return &CommitOffsets[T]{commit: commit, opts: buildOptions(opts)}
}

// Submit stages msg's offsets; the processor's commit policy decides when they are
// committed.
func (c *CommitOffsets[T]) Submit(msg processor.Message[T]) error {
	if !msg.Timestamp.IsZero() {
		c.sinceLatency++
		if c.sinceLatency <= latencyStride || c.sinceLatency%latencyStride == 0 {
			if now := c.opts.Now(); now.Sub(c.lastLatency) >= latencyInterval {
				c.lastLatency, c.sinceLatency = now, 0
				c.opts.Metrics.Timing("consumer.latency", now.Sub(msg.Timestamp))
			}
		}
	}
	if err := c.commit(msg.Committable, false); err != nil {
		return fmt.Errorf("strategies: commit offsets %s: %w", msg.Committable, err)
	}
	return nil
}

// SubmitRun stages the offsets of msgs, as Submit would for each, but those of
// consecutive messages of one partition once.
func (c *CommitOffsets[T]) SubmitRun(msgs []processor.Message[T]) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	// One latency sample per run at most: the run's messages came together.
	if ts := msgs[len(msgs)-1].Timestamp; !ts.IsZero() {
		// The clock is read as Submit reads it: for each run while few messages
		// came since the last sample, then once per latencyStride messages.
		before := c.sinceLatency
		c.sinceLatency += len(msgs)
		if before < latencyStride || before/latencyStride != c.sinceLatency/latencyStride {
			if now := c.opts.Now(); now.Sub(c.lastLatency) >= latencyInterval {
				c.lastLatency, c.sinceLatency = now, 0
				c.opts.Metrics.Timing("consumer.latency", now.Sub(ts))
			}
		}
	}
	var (
		part    processor.Partition
		next    int64
		pending bool
	)
	for i := range msgs {
		if q, o, ok := msgs[i].Committable.Single(); ok {
			if pending && q == part {
				next = max(next, o)
				continue
			}
			if err := c.stageOne(pending, part, next); err != nil {
				return 0, err
			}
			part, next, pending = q, o, true
			continue
		}
		if err := c.stageOne(pending, part, next); err != nil {
			return 0, err
		}
		pending = false
		if err := c.commit(msgs[i].Committable, false); err != nil {
			return 0, fmt.Errorf("strategies: commit offsets %s: %w", msgs[i].Committable, err)
		}
	}
	if err := c.stageOne(pending, part, next); err != nil {
		return 0, err
	}
	return len(msgs), nil
}

// stageOne stages next for part, if pending.
func (c *CommitOffsets[T]) stageOne(pending bool, part processor.Partition, next int64) error {
	if !pending {
		return nil
	}
	offsets := processor.CommittableOf(part, next)
	if err := c.commit(offsets, false); err != nil {
		return fmt.Errorf("strategies: commit offsets %s: %w", offsets, err)
	}
	return nil
}

// Poll stages nothing new but gives a time-based commit policy the chance to commit
// what is staged.
func (c *CommitOffsets[T]) Poll() error {
	if err := c.commit(processor.Committable{}, false); err != nil {
		return fmt.Errorf("strategies: commit staged offsets: %w", err)
	}
	return nil
}

// Close does nothing: there is no work in flight.
func (c *CommitOffsets[T]) Close() {}

// Join commits everything staged, whatever the commit policy says.
func (c *CommitOffsets[T]) Join(context.Context) error {
	if c.terminated {
		return nil
	}
	if err := c.commit(processor.Committable{}, true); err != nil {
		return fmt.Errorf("strategies: final commit: %w", err)
	}
	return nil
}

// Terminate makes a later Join commit nothing.
func (c *CommitOffsets[T]) Terminate() { c.terminated = true }
