package strategies

import (
	"context"
	"errors"
	"time"

	"github.com/creekstream/creek/processor"
)

// guardMaxHeld bounds the filtered messages a Guard holds back; past it Guard
// rejects further filtered messages until the inner strategy catches up.
const guardMaxHeld = 10_000

// Guard wraps an inner strategy that should see only real payloads. Filtered
// messages go around it, and a message the inner strategy reports invalid becomes a
// filtered message for its offset, so that offsets keep moving.
//
// A filtered message is held back until the inner strategy has forwarded every
// message of the same partitions submitted before it: committing it earlier would
// commit past work still in progress. Guard learns what the inner strategy has
// finished from the offsets it forwards, so an inner strategy that drops messages
// without forwarding a filtered message for them delays later filtered offsets of
// that partition until its next output or its Join.
type Guard[T any] struct {
	inner processor.Strategy[T]
	next  processor.Strategy[T]

	// submitted and forwarded are, per partition, the highest next offset submitted
	// to and forwarded by the inner strategy.
	submitted map[processor.Partition]int64
	forwarded map[processor.Partition]int64
	// held are the filtered messages not yet forwarded, oldest first.
	held []heldFiltered[T]
	// innerDone is set once the inner strategy has finished everything in time, which
	// releases every held message.
	innerDone bool
}

// heldFiltered is a filtered message and, per partition, the next offset the inner
// strategy must have forwarded before it may go.
type heldFiltered[T any] struct {
	msg  processor.Message[T]
	need processor.Committable
}

// NewGuard returns a Guard around the strategy that build returns; build receives
// the step the inner strategy must forward its results to.
func NewGuard[T any](build func(next processor.Strategy[T]) processor.Strategy[T], next processor.Strategy[T]) *Guard[T] {
	g := &Guard[T]{
		next:      next,
		submitted: make(map[processor.Partition]int64),
		forwarded: make(map[processor.Partition]int64),
	}
	g.inner = build(guardExit[T]{g})
	return g
}

// Submit passes msg to the inner strategy, or a filtered msg around it. When the
// inner strategy reports msg invalid, Submit queues a filtered message for its offset
// and returns the *processor.InvalidMessageError, so the processor can dead-letter it.
func (g *Guard[T]) Submit(msg processor.Message[T]) error {
	if err := ignoreRejected(g.release()); err != nil {
		return err
	}
	if msg.Filtered() {
		if len(g.held) >= guardMaxHeld {
			return processor.ErrMessageRejected
		}
		g.hold(msg)
		return ignoreRejected(g.release())
	}
	err := g.inner.Submit(msg)
	inv, invalid := processor.AsInvalid(err)
	if err != nil && !invalid {
		return err
	}
	if !invalid || !isInvalidOrigin(msg, inv) {
		// Also when the report is about another message: msg may then be inside.
		raiseOffsets(g.submitted, msg.Committable)
	}
	if invalid {
		var ts time.Time
		if isInvalidOrigin(msg, inv) {
			ts = msg.Timestamp
		}
		g.holdInvalid(inv, ts)
		if rerr := ignoreRejected(g.release()); rerr != nil {
			return rerr
		}
	}
	return err
}

// isInvalidOrigin reports whether inv is about msg itself.
func isInvalidOrigin[T any](msg processor.Message[T], inv *processor.InvalidMessageError) bool {
	pos, ok := msg.Origin()
	return ok && pos.Partition == inv.Partition && pos.Offset == inv.Offset
}

// holdInvalid queues a filtered message for the offset inv names.
func (g *Guard[T]) holdInvalid(inv *processor.InvalidMessageError, ts time.Time) {
	g.hold(processor.NewFiltered[T](processor.CommittableOf(inv.Partition, inv.Offset+1), ts))
}

// hold queues a filtered message with what the inner strategy must forward first:
// for each of its partitions, everything submitted to the inner strategy below the
// message's own offset.
func (g *Guard[T]) hold(msg processor.Message[T]) {
	var need processor.Committable
	var many map[processor.Partition]int64
	for p, next := range msg.Committable.All() {
		in, ok := g.submitted[p]
		if !ok {
			continue
		}
		n := min(in, next-1)
		if g.forwarded[p] >= n {
			continue
		}
		switch {
		case need.Len() == 0:
			need = processor.CommittableOf(p, n)
		case many == nil:
			many = need.Map()
			fallthrough
		default:
			many[p] = n
		}
	}
	if many != nil {
		need = processor.CommittableFromMap(many)
	}
	g.held = append(g.held, heldFiltered[T]{msg: msg, need: need})
}

// release forwards held messages, oldest first, while they are free to go. It
// returns ErrMessageRejected when the next step rejects one, which stays held.
func (g *Guard[T]) release() error {
	for len(g.held) > 0 {
		h := g.held[0]
		if !g.innerDone && !g.done(h.need) {
			return nil
		}
		err := g.next.Submit(h.msg)
		if errors.Is(err, processor.ErrMessageRejected) {
			return err
		}
		g.held[0] = heldFiltered[T]{}
		g.held = g.held[1:]
		if err != nil {
			return err
		}
	}
	return nil
}

// done reports whether the inner strategy has forwarded up to need.
func (g *Guard[T]) done(need processor.Committable) bool {
	for p, n := range need.All() {
		if g.forwarded[p] < n {
			return false
		}
	}
	return true
}

// raiseOffsets sets m[p] to the offsets of c that are higher.
func raiseOffsets(m map[processor.Partition]int64, c processor.Committable) {
	for p, o := range c.All() {
		if o > m[p] {
			m[p] = o
		}
	}
}

// Poll polls the inner strategy, releases the held messages that are free to go and
// polls the next step. An invalid message reported by the inner strategy is queued as
// a filtered message and its error returned.
func (g *Guard[T]) Poll() error {
	innerErr := g.inner.Poll()
	if inv, ok := processor.AsInvalid(innerErr); ok {
		g.holdInvalid(inv, time.Time{})
	} else if innerErr != nil {
		return innerErr
	}
	if err := ignoreRejected(g.release()); err != nil {
		return err
	}
	if err := g.next.Poll(); err != nil {
		return err
	}
	return innerErr
}

// Close closes the inner strategy.
func (g *Guard[T]) Close() { g.inner.Close() }

// Join joins the inner strategy, forwards the held messages, then closes and joins
// the next step. If the inner strategy runs out of time, held messages that may be
// ahead of its unfinished work are abandoned with it.
func (g *Guard[T]) Join(ctx context.Context) error {
	innerErr := g.inner.Join(ctx)
	// The inner strategy returning before ctx ended means it finished everything.
	g.innerDone = innerErr == nil && ctx.Err() == nil
	err := drain(ctx, g.release, g.next.Poll)
	g.next.Close()
	return errors.Join(innerErr, err, g.next.Join(ctx))
}

// Terminate terminates the inner strategy, drops the held messages and terminates
// the next step.
func (g *Guard[T]) Terminate() {
	g.inner.Terminate()
	g.held = nil
	g.next.Terminate()
}

// guardExit is the step the inner strategy forwards to. It passes results on to the
// Guard's next step and notes their offsets; the Guard itself polls, closes and joins
// that step, so the inner strategy's calls to do so are ignored.
type guardExit[T any] struct{ g *Guard[T] }

func (e guardExit[T]) Submit(msg processor.Message[T]) error {
	// Held messages that are free to go are older than msg: they go first, so that
	// offsets reach the next step in order.
	if err := e.g.release(); err != nil {
		return err
	}
	if err := e.g.next.Submit(msg); err != nil {
		return err
	}
	// Only once accepted: a held message must not overtake a rejected result.
	raiseOffsets(e.g.forwarded, msg.Committable)
	return nil
}

func (guardExit[T]) Poll() error                { return nil }
func (guardExit[T]) Close()                     {}
func (guardExit[T]) Join(context.Context) error { return nil }
func (guardExit[T]) Terminate()                 {}
