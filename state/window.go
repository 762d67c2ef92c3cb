package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// ErrLate is the reason a message past every window's grace period is sent to the
// dead-letter queue, with WindowConfig.LateInvalid.
var ErrLate = errors.New("state: message is later than the grace period of every window it falls in")

// WindowConfig says how messages fall into windows of event time.
type WindowConfig[T any] struct {
	// Size is the length of a window.
	Size time.Duration
	// Advance is the distance between the starts of consecutive windows: Size (or
	// zero) for tumbling windows, less than Size for hopping ones, which overlap.
	Advance time.Duration
	// Grace is how long after a window's end messages of it are still taken. A
	// window closes once the key's event time has passed its end plus Grace.
	Grace time.Duration
	// EventTime returns a message's event time; the message's timestamp when nil.
	EventTime func(processor.Message[T]) time.Time
	// LateInvalid sends late messages to the dead-letter queue (wrapping ErrLate)
	// instead of passing them on with Late set. Late messages are counted either
	// way, in the metric state.window.late_messages.
	LateInvalid bool
}

func (w WindowConfig[T]) resolved() (WindowConfig[T], error) {
	if w.Advance == 0 {
		w.Advance = w.Size
	}
	switch {
	case w.Size <= 0:
		return w, fmt.Errorf("state: window Size is %v; give a positive length", w.Size)
	case w.Advance < 0 || w.Advance > w.Size:
		return w, fmt.Errorf("state: window Advance is %v; give one between 0 and Size (%v)", w.Advance, w.Size)
	case w.Grace < 0:
		return w, fmt.Errorf("state: window Grace is %v; give zero or more", w.Grace)
	}
	if w.EventTime == nil {
		w.EventTime = func(m processor.Message[T]) time.Time { return m.Timestamp }
	}
	return w, nil
}

// Window is one window of a key and the aggregate of its messages.
type Window[A any] struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Value A         `json:"value"`
}

// Windowed is the value a windowed aggregation keeps per key: the key's open
// windows, oldest first, and its event time, the latest of its messages'. Closed
// and Late describe the message just applied and are not stored.
type Windowed[A any] struct {
	Open    []Window[A] `json:"open"`
	MaxTime time.Time   `json:"max_time"`
	// Closed are the windows this message closed, with their final values.
	Closed []Window[A] `json:"-"`
	// Late is set when the message fell only in windows closed already; it changed
	// nothing.
	Late bool `json:"-"`
}

// WindowAggregate aggregates each key's messages in windows of event time, by
// WindowConfig: every message is added, with add, to each open window it falls in
// (initial() starts a window). The Change of every message carries the key's open
// windows, so results are seen on every update, and the windows the message closed,
// for results once a window is final. Closed windows are dropped from the store, so
// a key keeps at most Size/Advance + Grace/Advance + 1 windows.
//
// Event time is the key's own: a window of a key closes when a message of that key
// carries the key's event time past the window's end plus the grace period, and its
// result comes out with that message. cfg.Codec defaults to JSON.
func WindowAggregate[S, T, A any](st pipeline.Stage[S, T], cfg Config[Windowed[A]], w WindowConfig[T], key func(T) string, initial func() A, add func(A, T) (A, error)) pipeline.Stage[S, Change[T, Windowed[A]]] {
	if cfg.Codec == nil {
		cfg.Codec = JSON[Windowed[A]]{}
	}
	w, werr := w.resolved()
	var fn UpdateFunc[T, Windowed[A]]
	if werr == nil && initial != nil && add != nil {
		log, m := cfg.Logger, cfg.Metrics
		if log == nil {
			log = zap.NewNop()
		}
		if m == nil {
			m = metrics.Noop{}
		}
		fn = func(_ context.Context, key string, msg processor.Message[T], v Windowed[A], _ bool) (Windowed[A], error) {
			return applyWindows(w, log, m, key, msg, v, initial, add)
		}
	}
	return pipeline.Through(st, func(next processor.Strategy[Change[T, Windowed[A]]], _ []strategies.Option) (processor.Strategy[T], error) {
		if werr != nil {
			return nil, fmt.Errorf("%w (state %s)", werr, cfg.Name)
		}
		return NewStep(cfg, key, fn, next)
	})
}

// applyWindows adds msg to the windows of v it falls in and closes those its event
// time has passed.
func applyWindows[T, A any](w WindowConfig[T], log *zap.Logger, m metrics.Metrics, key string, msg processor.Message[T], v Windowed[A], initial func() A, add func(A, T) (A, error)) (Windowed[A], error) {
	ts := w.EventTime(msg)
	v.Closed, v.Late = nil, false
	now := v.MaxTime
	if ts.After(now) {
		now = ts
	}
	closed := func(end time.Time) bool { return !end.Add(w.Grace).After(now) }
	taken := false
	// The windows of ts start at multiples of Advance since the Unix epoch, as in
	// Kafka Streams; the latest at or before ts comes first.
	n, adv := ts.UnixNano(), int64(w.Advance)
	last := time.Unix(0, n-((n%adv)+adv)%adv).UTC()
	for start := last; start.Add(w.Size).After(ts); start = start.Add(-w.Advance) {
		end := start.Add(w.Size)
		if closed(end) {
			continue
		}
		i := slices.IndexFunc(v.Open, func(x Window[A]) bool { return x.Start.Equal(start) })
		if i < 0 {
			v.Open = append(v.Open, Window[A]{Start: start, End: end, Value: initial()})
			i = len(v.Open) - 1
		}
		val, err := add(v.Open[i].Value, msg.Payload)
		if err != nil {
			return v, err
		}
		v.Open[i].Value = val
		taken = true
	}
	if !taken {
		m.Increment("state.window.late_messages", 1)
		log.Debug("state: late message; its windows are closed", zap.String("key", key), zap.Time("event_time", ts), zap.Time("key_time", v.MaxTime))
		if w.LateInvalid {
			return v, processor.Invalid(msg, fmt.Errorf("key %q, event time %v, key's time %v: %w", key, ts, v.MaxTime, ErrLate))
		}
		v.Late = true
		return v, nil
	}
	v.MaxTime = now
	open := v.Open[:0]
	for _, x := range v.Open {
		if closed(x.End) {
			v.Closed = append(v.Closed, x)
		} else {
			open = append(open, x)
		}
	}
	v.Open = open
	slices.SortFunc(v.Open, func(a, b Window[A]) int { return a.Start.Compare(b.Start) })
	slices.SortFunc(v.Closed, func(a, b Window[A]) int { return a.Start.Compare(b.Start) })
	return v, nil
}
