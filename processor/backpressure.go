package processor

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"
)

// retryInterval is the wait between offers of a rejected message while the
// partitions are not paused yet; a timer, so a rejecting strategy costs no CPU.
const retryInterval = 10 * time.Millisecond

// backpressure is the loop's state while the strategy rejects messages: the carried
// messages, when the rejections began, and whether the partitions are paused.
type backpressure[T any] struct {
	// carried holds the rejected message first, then any the consumer handed out
	// after Pause; head indexes the first, so popping does not give up capacity.
	carried []Message[T]
	head    int
	since   time.Time
	paused  bool
	timer   *time.Timer
}

func (b *backpressure[T]) empty() bool             { return b.head == len(b.carried) }
func (b *backpressure[T]) len() int                { return len(b.carried) - b.head }
func (b *backpressure[T]) peek() Message[T]        { return b.carried[b.head] }
func (b *backpressure[T]) pushAll(ms []Message[T]) { b.carried = append(b.carried, ms...) }

func (b *backpressure[T]) pop() {
	b.carried[b.head] = Message[T]{}
	b.head++
	if b.head == len(b.carried) {
		b.carried, b.head = b.carried[:0], 0
	}
}

// dropPartitions removes carried messages of the revoked partitions.
func (b *backpressure[T]) dropPartitions(revoked map[Partition]bool) {
	kept := b.carried[:0]
	for _, m := range b.carried[b.head:] {
		if pos, ok := m.Origin(); ok && revoked[pos.Partition] {
			continue
		}
		kept = append(kept, m)
	}
	clear(b.carried[len(kept):])
	b.carried, b.head = kept, 0
}

// wait blocks for d or until ctx is done.
func (b *backpressure[T]) wait(ctx context.Context, d time.Duration) {
	if b.timer == nil {
		b.timer = time.NewTimer(d)
	} else {
		b.timer.Reset(d)
	}
	select {
	case <-b.timer.C:
	case <-ctx.Done():
		b.timer.Stop()
	}
}

// accepted ends backpressure: the strategy took a message.
func (p *StreamProcessor[T]) accepted() {
	if p.bp.since.IsZero() {
		return
	}
	p.m.backpressureTime.Add(time.Since(p.bp.since))
	p.bp.since = time.Time{}
	if p.bp.paused {
		p.resume()
	}
}

// rejected keeps the message for another offer. After BackpressurePauseAfter of
// continuous rejections it pauses the partitions, so the client stops fetching while
// the member stays in the group; until then it waits a little between offers.
func (p *StreamProcessor[T]) rejected(ctx context.Context) {
	now := time.Now()
	if p.bp.since.IsZero() {
		p.bp.since = now
	}
	if p.bp.paused {
		return // the short poll of the paused consumer paces the offers
	}
	if now.Sub(p.bp.since) >= p.cfg.BackpressurePauseAfter {
		p.pause()
		return
	}
	p.bp.wait(ctx, retryInterval)
}

func (p *StreamProcessor[T]) pause() {
	parts := p.assignment()
	p.log.Info("processor: pausing partitions after continuous backpressure",
		zap.Duration("for", time.Since(p.bp.since)), zap.Int("partitions", len(parts)))
	p.consumer.Pause(parts)
	p.bp.paused = true
	p.m.pauses.Add(1)
}

func (p *StreamProcessor[T]) resume() {
	p.log.Info("processor: resuming partitions")
	parts := p.consumer.Paused()
	if p.dlq != nil {
		parts = slices.DeleteFunc(parts, p.dlq.held)
	}
	p.consumer.Resume(parts)
	p.bp.paused = false
	p.m.resumes.Add(1)
}

// resetBackpressure forgets the backpressure state when the strategy is closed: its
// carried messages were never processed and are read again by whoever is assigned.
func (p *StreamProcessor[T]) resetBackpressure() {
	if p.bp.paused {
		p.resume()
	}
	if !p.bp.since.IsZero() {
		p.m.backpressureTime.Add(time.Since(p.bp.since))
	}
	clear(p.bp.carried)
	p.bp.carried, p.bp.head = p.bp.carried[:0], 0
	p.bp.since = time.Time{}
}

// holdForDLQ pauses a partition whose dead-letter deliveries fail, until they are
// through (releaseForDLQ): work past the invalid message could not be committed.
func (p *StreamProcessor[T]) holdForDLQ(part Partition) {
	p.consumer.Pause([]Partition{part})
}

// releaseForDLQ resumes a partition held for the DLQ, unless backpressure pauses
// everything.
func (p *StreamProcessor[T]) releaseForDLQ(part Partition) {
	if !p.bp.paused {
		p.consumer.Resume([]Partition{part})
	}
}
