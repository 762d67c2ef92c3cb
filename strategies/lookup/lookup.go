package lookup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/internal/inflight"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
	"github.com/creekstream/creek/strategies/internal/config"
)

// Table is the part of a goka View that Lookup reads; *goka.View implements it.
type Table interface {
	// Get returns the value stored under key, decoded by the table's codec, or nil
	// when there is none.
	Get(key string) (any, error)
	// Recovered reports whether the table has caught up with its topic.
	Recovered() bool
}

// ErrDrop, returned by a KeyFunc or JoinFunc, drops the message: a filtered message
// takes its place so that its offset is still committed.
var ErrDrop = errors.New("lookup: drop message")

// KeyFunc returns the table key a message is looked up by.
type KeyFunc[T any] func(msg processor.Message[T]) (string, error)

// JoinFunc combines a message with the table's value under its key into the payload
// passed on. found is false when the table holds no value for the key; value is then
// V's zero value.
type JoinFunc[T, V, U any] func(msg processor.Message[T], value V, found bool) (U, error)

// Lookup enriches each message with a value from a Table and hands the result to the
// next step.
//
// Like every strategy it is driven from the processor's loop goroutine alone, which
// owns all of its state; only the Table is shared, and goka's View is safe for
// concurrent reads.
type Lookup[T, V, U any] struct {
	table Table
	key   KeyFunc[T]
	join  JoinFunc[T, V, U]
	next  processor.Strategy[U]

	log     *zap.Logger
	metrics metrics.Metrics
	now     func() time.Time

	// held is the result the next step rejected.
	held inflight.Slot[U]
	// waitingSince is when Submit first found the table not recovered; zero while it
	// is not waiting.
	waitingSince time.Time
}

// New returns a Lookup that reads table under the key that key returns and combines
// message and value with join. Errors from key and join other than ErrDrop are
// returned from Submit; they report a message that can never be joined with
// processor.Invalid, which sends it to the dead-letter queue.
//
// New takes no value that configuration could get wrong, so it returns no error; a
// nil argument is a mistake in the calling code and panics.
func New[T, V, U any](table Table, key KeyFunc[T], join JoinFunc[T, V, U], next processor.Strategy[U], opts ...strategies.Option) *Lookup[T, V, U] {
	switch {
	case table == nil:
		panic("lookup: table is nil; pass the goka View to read")
	case key == nil:
		panic("lookup: key function is nil; pass one that returns the table key of a message")
	case join == nil:
		panic("lookup: join function is nil; pass one that combines a message with its table value")
	case next == nil:
		panic("lookup: next step is nil; pass the strategy that takes the joined messages")
	}
	o := config.Resolve(opts)
	return &Lookup[T, V, U]{table: table, key: key, join: join, next: next, log: o.Logger, metrics: o.Metrics, now: o.Now}
}

// Submit looks msg up and forwards the joined result. It rejects msg while the table
// has not recovered and while a result the next step rejected is held. Filtered
// messages pass through.
func (l *Lookup[T, V, U]) Submit(msg processor.Message[T]) error {
	if l.held.Full() {
		return processor.ErrMessageRejected
	}
	if msg.Filtered() {
		// Nothing was looked up, so a rejection can go straight back to the caller.
		return l.next.Submit(processor.AsFiltered[U](msg))
	}
	// Checked on every message, not once: a View that reconnects falls behind its
	// topic again, and joining against it then would read stale values.
	if !l.table.Recovered() {
		if l.waitingSince.IsZero() {
			l.waitingSince = l.now()
			l.log.Info("table has not recovered; holding messages until it has")
		}
		return processor.ErrMessageRejected
	}
	if !l.waitingSince.IsZero() {
		waited := l.now().Sub(l.waitingSince)
		l.waitingSince = time.Time{}
		l.metrics.Timing("strategies.lookup.recovery_wait", waited)
		l.log.Info("table recovered; joining messages", zap.Duration("waited", waited))
	}

	out, err := l.lookup(msg)
	if err != nil {
		return err
	}
	return l.held.Submit(l.next, out)
}

// lookup joins msg with its table value, or returns a filtered message for a dropped
// one.
func (l *Lookup[T, V, U]) lookup(msg processor.Message[T]) (processor.Message[U], error) {
	key, err := l.key(msg)
	if err != nil {
		return l.fail(msg, "key function", err)
	}
	raw, err := l.table.Get(key)
	if err != nil {
		return processor.Message[U]{}, fmt.Errorf("lookup: get key %q from table: %w", key, err)
	}
	var value V
	found := raw != nil
	if found {
		v, ok := raw.(V)
		if !ok {
			return processor.Message[U]{}, fmt.Errorf("lookup: table value of key %q is a %T, not a %T; give the View a codec that decodes to the table type", key, raw, value)
		}
		value = v
	} else {
		l.metrics.Increment("strategies.lookup.missing_keys", 1)
	}
	out, err := l.join(msg, value, found)
	if err != nil {
		return l.fail(msg, "join function", err)
	}
	return processor.WithPayload(msg, out), nil
}

// fail turns an error of the user's function into a dropped message or an error for
// Submit to return.
func (l *Lookup[T, V, U]) fail(msg processor.Message[T], fn string, err error) (processor.Message[U], error) {
	if errors.Is(err, ErrDrop) {
		l.metrics.Increment("strategies.lookup.dropped_messages", 1)
		return processor.AsFiltered[U](msg), nil
	}
	if _, ok := processor.AsInvalid(err); ok {
		return processor.Message[U]{}, err
	}
	return processor.Message[U]{}, fmt.Errorf("lookup: %s: %w", fn, err)
}

// Poll polls the next step and offers it the held result again.
func (l *Lookup[T, V, U]) Poll() error {
	if err := l.next.Poll(); err != nil {
		return err
	}
	if err := l.held.Retry(l.next); !errors.Is(err, processor.ErrMessageRejected) {
		return err
	}
	return nil
}

// Close does nothing: Lookup holds at most one result, which Join flushes.
func (l *Lookup[T, V, U]) Close() {}

// Join offers the held result until the next step takes it or ctx is done, then
// closes and joins the next step. A result still held when ctx is done is abandoned.
func (l *Lookup[T, V, U]) Join(ctx context.Context) error {
	err := l.drain(ctx)
	l.next.Close()
	return errors.Join(err, l.next.Join(ctx))
}

func (l *Lookup[T, V, U]) drain(ctx context.Context) error {
	abandoned, err := inflight.Drain(ctx, func() error { return l.held.Retry(l.next) }, l.next.Poll, nil)
	if abandoned {
		l.log.Warn("join timed out with a joined message still held; it will be redelivered")
	}
	return err
}

// Terminate drops the held result and terminates the next step.
func (l *Lookup[T, V, U]) Terminate() {
	l.held.Clear()
	l.next.Terminate()
}
