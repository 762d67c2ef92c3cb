package processor

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/creekstream/creek/metrics"
	"go.uber.org/zap"
)

// The phases the loop reports to the watchdog.
const (
	phasePoll         = "poll"
	phaseStrategyPoll = "strategy poll"
	phaseSubmit       = "submit"
	phaseCommit       = "commit"
	phaseRebalance    = "rebalance"
	phaseJoin         = "join"
)

// heartbeat is what the loop tells the watchdog.
type heartbeat interface {
	Tick()
	TickPhase(phase string)
	SetPhase(phase string)
}

// bufferedConsumer is a Consumer that can tell whether its next Poll returns at once.
// The loop times only the polls that may wait: reading the clock around a poll that
// hands out a buffered message would cost more than the poll.
type bufferedConsumer interface {
	// Buffered returns how many messages Poll can hand out without waiting.
	Buffered() int
}

// The loop reads the clock around every poll that may wait, and otherwise every
// clockStride iterations or once clockPeriod has passed, whichever comes first:
// at millions of messages a second a reading per iteration (24 ns here) was a
// fifth of the loop's cost. p.now is that reading; the commit policy, the metrics
// flush and the time figures use it, so they are late by at most clockPeriod plus
// one iteration.
const (
	clockStride = 256
	clockPeriod = 10 * time.Millisecond
)

// iterate runs the loop until ctx is done or an iteration fails; a panic fails it.
// The recovery is set up once, not per iteration: a panic ends the loop anyway.
func (p *StreamProcessor[T]) iterate(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	for ctx.Err() == nil {
		if err := p.runOnce(ctx); err != nil {
			return err
		}
	}
	return nil
}

// runOnce is one iteration of the loop: poll the consumer (unless a message is
// carried), poll the strategy, submit.
//
// The message stays in runOnce's frame and the loop's own calls take a pointer to
// it: it is some 170 bytes (a Kafka payload is 72), and copying it into and out of
// each call cost more than what most of them do with it.
func (p *StreamProcessor[T]) runOnce(ctx context.Context) (err error) {
	p.sinceClock++
	var msg Message[T]
	var fresh bool
	if p.bp.empty() || p.bp.paused {
		if p.buffered != nil && p.buffered.Buffered() > 0 {
			fresh, err = p.pollConsumer(ctx, false, &msg)
			p.advanceClock()
		} else {
			p.readClock()
			fresh, err = p.pollConsumer(ctx, true, &msg)
			now := p.clock()
			p.m.pollTime.Add(now.Sub(p.now))
			p.now = now
		}
		if err != nil {
			return err
		}
	} else {
		p.advanceClock()
	}
	if p.strategy != nil {
		return p.process(ctx, &msg, fresh)
	}
	return nil
}

// advanceClock reads the clock if it is due (see clockStride).
func (p *StreamProcessor[T]) advanceClock() {
	if p.sinceClock >= clockStride || p.clockDue.Load() {
		p.readClock()
	}
}

// readClock sets p.now. The time since the previous reading was spent processing:
// the waits for the consumer are all read and counted apart. The gauges are set
// here since time moves only here.
func (p *StreamProcessor[T]) readClock() {
	now := p.clock()
	p.m.processingTime.Add(now.Sub(p.now))
	p.now = now
	p.addPerMessageCounts()
	p.clockDue.Store(false)
	if now.Sub(p.lastGauges) >= time.Second {
		p.recordGauges(now)
	}
}

// clock returns the current time from the monotonic clock alone, which costs half
// of time.Now. Its wall reading drifts from the system's when the system clock is
// stepped, so it serves durations and deadlines only, never timestamps.
func (p *StreamProcessor[T]) clock() time.Time {
	return p.epoch.Add(time.Since(p.epoch))
}

// runClockTicker sets p.clockDue every clockPeriod until stop is closed, so that
// slow iterations do not leave p.now behind for clockStride of them.
func (p *StreamProcessor[T]) runClockTicker(stop <-chan struct{}) {
	t := time.NewTicker(clockPeriod)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.clockDue.Store(true)
		case <-stop:
			return
		}
	}
}

// process polls the strategy, commits if due and submits the message just polled,
// if fresh, or else the first carried one. A fresh message is carried only if it
// is not submitted now: most messages are taken at once, and carrying each would
// copy it twice more.
func (p *StreamProcessor[T]) process(ctx context.Context, msg *Message[T], fresh bool) error {
	// The iteration's tick and its phase in one store.
	p.phase = phaseStrategyPoll
	p.hb.TickPhase(phaseStrategyPoll)
	if err := p.strategy.Poll(); err != nil {
		if inv, ok := AsInvalid(err); ok {
			if fresh {
				p.bp.push(*msg)
			}
			return p.handleInvalid(inv)
		}
		return fmt.Errorf("processor: strategy poll: %w", err)
	}
	if p.dlq != nil {
		if err := p.dlq.tick(p.now); err != nil {
			return err
		}
	}
	if err := p.commitIfDue(); err != nil {
		return err
	}
	if fresh {
		return p.submit(ctx, msg, true)
	}
	if p.bp.empty() {
		return nil
	}
	carried := p.bp.peek()
	return p.submit(ctx, &carried, false)
}

// maxHeldWhilePaused bounds the messages a consumer may still hand out after Pause
// (those it had fetched already). More means it ignores Pause: a state error.
const maxHeldWhilePaused = 10000

// pollConsumer polls the consumer into *msg. It reports whether *msg is to be
// submitted now (fresh), or carries it behind the messages already carried. Only a
// poll that may wait is a phase of its own (and a tick, for a loop with nothing assigned that only polls):
// one that hands out a message the consumer holds cannot stall, and a heartbeat
// store is a tenth of the loop's cost.
func (p *StreamProcessor[T]) pollConsumer(ctx context.Context, mayWait bool, msg *Message[T]) (fresh bool, err error) {
	if mayWait {
		p.phase = phasePoll
		p.hb.TickPhase(phasePoll)
	}
	timeout := p.cfg.PollTimeout
	if p.bp.paused {
		timeout = p.cfg.PausedPollTimeout
	}
	if mayWait && p.dlq != nil && timeout > dlqTickInterval && p.dlq.busy() {
		// Deliveries are looked at and retried only when the loop comes round, and
		// a commit held for them waits as long: with no traffic, a full PollTimeout
		// per round put seconds between a retry's due time and the retry.
		timeout = dlqTickInterval
	}
	var ok bool
	*msg, ok, err = p.consumer.Poll(ctx, timeout)
	if p.cbErr != nil {
		return false, p.cbErr
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return false, nil
		}
		return false, fmt.Errorf("processor: poll consumer: %w", err)
	}
	if !ok {
		return false, nil
	}
	pos, hasPos := msg.Origin()
	if p.strategy == nil {
		return false, fmt.Errorf("processor: state error: a message (committable %s) arrived while no strategy runs (nothing assigned)", msg.Committable)
	}
	if hasPos {
		h := p.hotIn(pos.Partition)
		if !h.assigned {
			// Fetched before a cooperative revocation; the partition's new owner reads it.
			return false, nil
		}
		msg.ctx = h.ctx
		if !h.polled {
			p.first[pos.Partition], h.polled = pos.Offset, true
		}
	} else {
		msg.ctx = p.ctxs.chain
	}
	if p.extract != nil {
		msg.ctx = p.extract(msg.ctx, msg.Payload)
	}
	if p.bp.paused && p.bp.len() >= maxHeldWhilePaused {
		return false, fmt.Errorf("processor: state error: the consumer handed out %d messages after Pause; it must stop fetching paused partitions", p.bp.len())
	}
	if p.dlq != nil && hasPos {
		p.dlq.record(pos, *msg)
	}
	if !p.bp.empty() {
		p.bp.push(*msg)
		return false, nil
	}
	return true, nil
}

// submit offers msg to the strategy: the fresh message, or else the first carried.
// A rejected fresh message is carried.
func (p *StreamProcessor[T]) submit(ctx context.Context, msg *Message[T], fresh bool) error {
	p.setPhase(phaseSubmit)
	err := p.strategy.Submit(*msg)
	switch {
	case err == nil:
		if !fresh {
			p.bp.pop()
		}
		p.markSubmitted(msg.Committable)
		p.accepted()
		return nil
	case errors.Is(err, ErrMessageRejected):
		if fresh {
			p.bp.push(*msg)
		}
		p.rejected(ctx)
		return nil
	}
	if inv, ok := AsInvalid(err); ok {
		if !fresh {
			p.bp.pop()
		}
		p.accepted()
		return p.handleInvalid(inv)
	}
	return fmt.Errorf("processor: submit to strategy: %w", err)
}

// handleInvalid counts an invalid message and sends it to the dead-letter queue. The
// consumer never stops for a bad message; without a DLQ it is logged and skipped,
// since stopping would only make it a poison pill that stops the partition for good.
func (p *StreamProcessor[T]) handleInvalid(inv *InvalidMessageError) error {
	p.m.invalid.Add(1)
	p.noteInvalid(inv.Partition, inv.Offset)
	if p.dlq == nil {
		p.log.Error("processor: invalid message skipped (no DLQ configured)",
			zap.Stringer("partition", inv.Partition), zap.Int64("offset", inv.Offset), zap.String("reason", inv.Reason))
		return nil
	}
	return p.dlq.handle(inv)
}

func (p *StreamProcessor[T]) setPhase(phase string) {
	p.phase = phase
	p.hb.SetPhase(phase)
}

// loopMetrics are the loop's series in the metrics buffer, looked up once per run:
// the loop records per message, and a lookup per figure would cost more than the
// work it measures. The two counts that can move on every message, iterations and
// DLQ buffer evictions, are carried in plain fields until the next clock reading
// (addPerMessageCounts): an atomic add per message was 2% of the loop with the DLQ.
type loopMetrics struct {
	runs, invalid, pauses, resumes, assigned, revoked                    metrics.Counter
	createStrategy, closeStrategy                                        metrics.Counter
	dlqDropped, dlqEvicted, dlqRefetched, dlqFailed, commitOK, commitErr metrics.Counter
	revokeTimeouts, lost                                                 metrics.Counter

	pollTime, processingTime, backpressureTime, dlqTime metrics.Timer
	joinTime, callbackTime, shutdownTime                metrics.Timer
}

func newLoopMetrics(b *metrics.Buffer) loopMetrics {
	return loopMetrics{
		runs:           b.Counter("consumer.run.count"),
		invalid:        b.Counter("consumer.invalid_message.count"),
		pauses:         b.Counter("consumer.pause"),
		resumes:        b.Counter("consumer.resume"),
		assigned:       b.Counter("consumer.partitions_assigned.count"),
		revoked:        b.Counter("consumer.partitions_revoked.count"),
		createStrategy: b.Counter("consumer.run.create_strategy"),
		closeStrategy:  b.Counter("consumer.run.close_strategy"),
		dlqDropped:     b.Counter("consumer.dlq.dropped_messages"),
		dlqEvicted:     b.Counter("consumer.dlq_buffer.exceeded"),
		dlqRefetched:   b.Counter("consumer.dlq.refetched"),
		dlqFailed:      b.Counter("consumer.dlq.failed_deliveries"),
		commitOK:       b.Counter("consumer.commit_status", metrics.Tag{Key: "status", Value: "ok"}),
		commitErr:      b.Counter("consumer.commit_status", metrics.Tag{Key: "status", Value: "error"}),
		revokeTimeouts: b.Counter("consumer.revoke.timeout"),
		lost:           b.Counter("consumer.partitions_lost.count"),

		pollTime:         b.Timer("consumer.poll.time"),
		processingTime:   b.Timer("consumer.processing.time"),
		backpressureTime: b.Timer("consumer.backpressure.time"),
		dlqTime:          b.Timer("consumer.dlq.time"),
		joinTime:         b.Timer("consumer.join.time"),
		callbackTime:     b.Timer("consumer.callback.time"),
		shutdownTime:     b.Timer("consumer.shutdown.time"),
	}
}

// addPerMessageCounts adds the iterations and DLQ evictions since the last clock
// reading to their counters.
func (p *StreamProcessor[T]) addPerMessageCounts() {
	p.m.runs.Add(int64(p.sinceClock))
	p.sinceClock = 0
	if p.dlq != nil && p.dlq.evicted != 0 {
		p.m.dlqEvicted.Add(p.dlq.evicted)
		p.dlq.evicted = 0
	}
}

// recordGauges sets the gauges, from the loop's goroutine since they read its state.
func (p *StreamProcessor[T]) recordGauges(now time.Time) {
	if p.dlq != nil {
		p.metrics.Gauge("consumer.dlq_buffer.len", float64(p.dlq.buffered()))
	}
	p.recordLag()
	p.lastGauges = now
}
