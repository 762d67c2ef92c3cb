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

// runPoller is a Consumer that can hand out a partition's run of messages at once.
// The loop then does its per-message bookkeeping (phases, partition lookups,
// backpressure checks, polling the strategy) once per run: at millions of
// messages a second, doing it per message cost more than the messages' own work.
type runPoller[T any] interface {
	// PollRun returns up to cap(into) messages of one partition in offset order,
	// waiting at most timeout for the first: into extended, or a slice of the
	// consumer's own, valid until the next Poll or PollRun call. Rebalance
	// callbacks run inside it, as in Poll.
	PollRun(ctx context.Context, timeout time.Duration, into []Message[T]) ([]Message[T], error)
}

// pollOne adapts a Consumer without PollRun: each run is one polled message.
type pollOne[T any] struct{ c Consumer[T] }

func (o pollOne[T]) PollRun(ctx context.Context, timeout time.Duration, into []Message[T]) ([]Message[T], error) {
	m, ok, err := o.c.Poll(ctx, timeout)
	if !ok {
		return into, err
	}
	return append(into, m), err
}

// maxRun bounds a run: long enough that the per-run work is a small share of each
// message's cost, short enough that the run's buffer (160 bytes a Kafka message)
// stays in the core's cache.
const maxRun = 256

// The loop reads the clock around every poll that may wait, and otherwise every
// clockStride iterations or once clockPeriod has passed, whichever comes first:
// at millions of messages a second a reading per iteration (24 ns here) was a
// fifth of the loop's cost. p.now is that reading; the commit policy, the metrics
// flush and the time figures use it, so they are late by at most clockPeriod plus
// one message.
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

// runOnce is one iteration of the loop: poll the consumer for a run of messages
// (unless messages are carried), poll the strategy, submit.
func (p *StreamProcessor[T]) runOnce(ctx context.Context) (err error) {
	p.sinceClock++
	var run []Message[T]
	if p.bp.empty() || p.bp.paused {
		if p.buffered != nil && p.buffered.Buffered() > 0 {
			run, err = p.pollConsumer(ctx, false)
			p.advanceClock()
		} else {
			p.readClock()
			run, err = p.pollConsumer(ctx, true)
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
		return p.process(ctx, run)
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

// process polls the strategy, commits if due and submits the run just polled, if
// any, or else the carried messages. A fresh run is carried only from the first
// message the strategy rejects: most runs are taken whole, and carrying each
// message would copy it twice more.
func (p *StreamProcessor[T]) process(ctx context.Context, run []Message[T]) error {
	// The iteration's tick and its phase in one store.
	p.phase = phaseStrategyPoll
	p.hb.TickPhase(phaseStrategyPoll)
	if err := p.strategy.Poll(); err != nil {
		if inv, ok := AsInvalid(err); ok {
			p.carry(run)
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
	if len(run) > 0 {
		return p.submitRun(ctx, run)
	}
	if p.bp.empty() {
		return nil
	}
	return p.submitCarried(ctx)
}

// maxHeldWhilePaused bounds the messages a consumer may still hand out after Pause
// (those it had fetched already). More means it ignores Pause: a state error.
const maxHeldWhilePaused = 10000

// pollConsumer polls the consumer for a run of messages. It returns the run if it
// is to be submitted now, or carries it behind the messages already carried. Only
// a poll that may wait is a phase of its own (and a tick, for a loop with nothing
// assigned that only polls): one that hands out messages the consumer holds
// cannot stall, and a heartbeat store is a tenth of the loop's cost.
func (p *StreamProcessor[T]) pollConsumer(ctx context.Context, mayWait bool) ([]Message[T], error) {
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
	run, err := p.runs.PollRun(ctx, timeout, p.runBuf[:0])
	if p.cbErr != nil {
		return nil, p.cbErr
	}
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, nil
		}
		return nil, fmt.Errorf("processor: poll consumer: %w", err)
	}
	if len(run) == 0 {
		if mayWait {
			// Idle: the buffer must not keep the last run's payloads alive.
			clear(p.runBuf[:cap(p.runBuf)])
		}
		return nil, nil
	}
	if p.strategy == nil {
		return nil, fmt.Errorf("processor: state error: a message (committable %s) arrived while no strategy runs (nothing assigned)", run[0].Committable)
	}
	// A run is of one partition; the first message says which.
	pos, hasPos := run[0].Origin()
	if hasPos {
		h := p.hotIn(pos.Partition)
		if !h.assigned {
			// Fetched before a cooperative revocation; the partition's new owner reads it.
			return nil, nil
		}
		for i := range run {
			run[i].ctx = h.ctx
		}
		if !h.polled {
			p.first[pos.Partition], h.polled = pos.Offset, true
		}
	} else {
		for i := range run {
			run[i].ctx = p.ctxs.chain
		}
	}
	if p.extract != nil {
		for i := range run {
			run[i].ctx = p.extract(run[i].ctx, run[i].Payload)
		}
	}
	if p.bp.paused && p.bp.len() >= maxHeldWhilePaused {
		return nil, fmt.Errorf("processor: state error: the consumer handed out %d messages after Pause; it must stop fetching paused partitions", p.bp.len())
	}
	if !p.bp.empty() {
		p.carry(run)
		return nil, nil
	}
	return run, nil
}

// carry carries messages just polled behind those already carried.
func (p *StreamProcessor[T]) carry(run []Message[T]) {
	p.recordDLQ(run)
	p.bp.pushAll(run)
}

// recordDLQ keeps the raw messages for the DLQ, once each: as a fresh message is
// submitted, or as it is carried. The DLQ's invalid ratio counts the messages kept
// so far, so a run must not be counted before its invalid ones are handled.
func (p *StreamProcessor[T]) recordDLQ(run []Message[T]) {
	if p.dlq == nil {
		return
	}
	for i := range run {
		if pos, ok := run[i].Origin(); ok {
			p.dlq.record(pos, run[i])
		}
	}
}

// submitRun offers the messages of a fresh run to the strategy in order, and
// carries them from the first one it rejects. The loop comes round (a heartbeat
// tick, and the clock if it is due) for every message, or for every chunk of a
// run that the strategy takes at once (see submitChunk), so that a run of slow
// messages is neither reported as stuck nor holds back a due commit.
func (p *StreamProcessor[T]) submitRun(ctx context.Context, run []Message[T]) error {
	p.setPhase(phaseSubmit)
	// With a DLQ, every message is kept for it just before it is submitted: its
	// invalid ratio counts the messages kept so far. A run of one goes by Submit,
	// which costs less than SubmitRun for a single message.
	var rs RunSubmitter[T]
	if p.dlq == nil && len(run) > 1 {
		rs, _ = p.strategy.(RunSubmitter[T])
	}
	last := -1
	defer func() {
		// Messages of a run are of one partition in offset order, so the last one
		// taken is the one its offset is read from.
		if last >= 0 {
			p.markSubmitted(run[last].Committable)
		}
	}()
	for i := 0; i < len(run); {
		if i > 0 {
			p.hb.Tick()
			if p.clockDue.Load() {
				p.readClock()
			}
		}
		n, err := 1, error(nil)
		if rs != nil {
			n, err = p.submitChunk(rs, run[i:])
		} else {
			if p.dlq != nil {
				p.recordDLQ(run[i : i+1])
			}
			if err = p.strategy.Submit(run[i]); err != nil {
				n = 0
			}
		}
		if n == 0 && err == nil {
			return fmt.Errorf("processor: state error: the strategy's SubmitRun took none of %d messages and returned no error", len(run)-i)
		}
		if err == nil {
			i += n
			last = i - 1
			continue
		}
		if errors.Is(err, ErrMessageRejected) {
			i += n
			if n > 0 {
				last = i - 1
			}
			p.recordDLQ(run[i+1:])
			p.bp.pushAll(run[i:])
			if i > 0 {
				// The strategy has not been polled since it took the message
				// before; it is offered this one again after the next poll.
				p.accepted()
				return nil
			}
			p.rejected(ctx)
			return nil
		}
		if inv, ok := AsInvalid(err); ok {
			if rs == nil || n < 1 {
				n = 1 // an invalid message counts as taken
			}
			// The messages of the chunk but the invalid one were taken.
			j := i + n - 1
			if isAt(run[j], inv) {
				j--
			}
			if j >= i {
				last = j
			}
			i += n
			p.accepted()
			if err := p.handleInvalid(inv); err != nil {
				return err
			}
			continue
		}
		return fmt.Errorf("processor: submit to strategy: %w", err)
	}
	if last >= 0 {
		p.accepted()
	}
	return nil
}

// isAt reports whether m is the broker message inv names.
func isAt[T any](m Message[T], inv *InvalidMessageError) bool {
	pos, ok := m.Origin()
	return ok && pos.Partition == inv.Partition && pos.Offset == inv.Offset
}

// minChunk and maxChunk bound the messages the loop hands a RunSubmitter at once.
const minChunk, maxChunk = 1, maxRun

// submitChunk hands up to p.chunk messages of msgs to rs. The chunk halves when
// the clock ticker fired during it (it took about clockPeriod or longer) and
// doubles up to maxChunk when it did not, so that fast messages go in whole runs
// and slow ones one at a time, with the loop coming round between chunks.
func (p *StreamProcessor[T]) submitChunk(rs RunSubmitter[T], msgs []Message[T]) (int, error) {
	if p.chunk == 0 {
		p.chunk = minChunk
	}
	msgs = msgs[:min(len(msgs), p.chunk)]
	due := p.clockDue.Load()
	n, err := rs.SubmitRun(msgs)
	n = max(0, min(n, len(msgs)))
	switch {
	case !due && p.clockDue.Load():
		p.chunk = max(minChunk, p.chunk/2)
	case n == len(msgs):
		p.chunk = min(maxChunk, p.chunk*2)
	}
	return n, err
}

// submitCarried offers the carried messages to the strategy in order, until it
// rejects one.
func (p *StreamProcessor[T]) submitCarried(ctx context.Context) error {
	p.setPhase(phaseSubmit)
	for first := true; !p.bp.empty(); first = false {
		if !first {
			p.hb.Tick()
			if p.clockDue.Load() {
				p.readClock()
			}
		}
		msg := p.bp.peek()
		err := p.strategy.Submit(msg)
		switch {
		case err == nil:
			p.bp.pop()
			p.markSubmitted(msg.Committable)
			p.accepted()
			continue
		case errors.Is(err, ErrMessageRejected):
			if first {
				p.rejected(ctx)
			}
			return nil
		}
		if inv, ok := AsInvalid(err); ok {
			p.bp.pop()
			p.accepted()
			if err := p.handleInvalid(inv); err != nil {
				return err
			}
			continue
		}
		return fmt.Errorf("processor: submit to strategy: %w", err)
	}
	return nil
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
