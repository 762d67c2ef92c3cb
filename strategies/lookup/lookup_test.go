package lookup

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

var part = processor.Partition{Topic: "events", Index: 0}

// memTable is a Table held in a map.
type memTable struct {
	mu        sync.Mutex
	values    map[string]any
	recovered bool
	getErr    error
}

func (t *memTable) Get(key string) (any, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.getErr != nil {
		return nil, t.getErr
	}
	return t.values[key], nil
}

func (t *memTable) Recovered() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.recovered
}

func (t *memTable) setRecovered(r bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recovered = r
}

// sink is a terminal step that records what reaches it and rejects while reject is
// set.
type sink[T any] struct {
	got        []processor.Message[T]
	reject     bool
	polls      int
	closed     bool
	joined     bool
	terminated bool
}

func (s *sink[T]) Submit(m processor.Message[T]) error {
	if s.closed {
		panic("submit after close")
	}
	if s.reject {
		return processor.ErrMessageRejected
	}
	s.got = append(s.got, m)
	return nil
}
func (s *sink[T]) Poll() error                { s.polls++; return nil }
func (s *sink[T]) Close()                     { s.closed = true }
func (s *sink[T]) Join(context.Context) error { s.joined = true; return nil }
func (s *sink[T]) Terminate()                 { s.terminated = true }

// counting records Increment and Timing calls.
type counting struct {
	mu      sync.Mutex
	counts  map[string]int64
	timings map[string][]time.Duration
}

func (c *counting) Increment(name string, v int64, _ ...metrics.Tag) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]int64{}
	}
	c.counts[name] += v
}

func (c *counting) Gauge(string, float64, ...metrics.Tag) {}

func (c *counting) Timing(name string, d time.Duration, _ ...metrics.Tag) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timings == nil {
		c.timings = map[string][]time.Duration{}
	}
	c.timings[name] = append(c.timings[name], d)
}

type event struct{ User, Action string }

func byUser(m processor.Message[event]) (string, error) { return m.Payload.User, nil }

// describe joins an event with a user's name, passing missing users as "?".
func describe(m processor.Message[event], name string, found bool) (string, error) {
	if !found {
		name = "?"
	}
	return name + " " + m.Payload.Action, nil
}

func brokerMsg(off int64, user, action string) processor.Message[event] {
	return processor.NewBrokerMessage(event{User: user, Action: action}, part, off, time.Unix(100, 0))
}

func newLookup(t *testing.T, table Table, join JoinFunc[event, string, string], next processor.Strategy[string], opts ...strategies.Option) *Lookup[event, string, string] {
	t.Helper()
	return New(table, byUser, join, next, opts...)
}

func TestNewValidates(t *testing.T) {
	table := &memTable{}
	next := &sink[string]{}
	for _, tc := range []struct {
		name  string
		table Table
		key   KeyFunc[event]
		join  JoinFunc[event, string, string]
		next  processor.Strategy[string]
		want  string
	}{
		{"nil table", nil, byUser, describe, next, "table is nil"},
		{"nil key", table, nil, describe, next, "key function is nil"},
		{"nil join", table, byUser, nil, next, "join function is nil"},
		{"nil next", table, byUser, describe, nil, "next step is nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if msg, ok := r.(string); !ok || !strings.Contains(msg, tc.want) {
					t.Fatalf("New panicked with %v, want a message containing %q", r, tc.want)
				}
			}()
			New(tc.table, tc.key, tc.join, tc.next)
		})
	}
}

func TestHoldsMessagesUntilRecovered(t *testing.T) {
	table := &memTable{values: map[string]any{"u1": "Ada"}}
	next := &sink[string]{}
	m := &counting{}
	clock := time.Unix(0, 0)
	l := newLookup(t, table, describe, next, strategies.WithMetrics(m), strategies.WithClock(func() time.Time { return clock }))

	for range 3 {
		if err := l.Submit(brokerMsg(0, "u1", "login")); !errors.Is(err, processor.ErrMessageRejected) {
			t.Fatalf("Submit before recovery = %v, want ErrMessageRejected", err)
		}
		clock = clock.Add(time.Second)
	}
	if len(next.got) != 0 {
		t.Fatalf("next got %d messages before recovery, want none", len(next.got))
	}

	table.setRecovered(true)
	if err := l.Submit(brokerMsg(0, "u1", "login")); err != nil {
		t.Fatalf("Submit after recovery: %v", err)
	}
	if len(next.got) != 1 || next.got[0].Payload != "Ada login" {
		t.Fatalf("next got %v, want one message \"Ada login\"", next.got)
	}
	if got := m.timings["strategies.lookup.recovery_wait"]; len(got) != 1 || got[0] != 3*time.Second {
		t.Fatalf("recovery_wait timings = %v, want [3s]", got)
	}

	// A View that reconnects falls behind again; messages are held again.
	table.setRecovered(false)
	if err := l.Submit(brokerMsg(1, "u1", "logout")); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit after the table fell behind = %v, want ErrMessageRejected", err)
	}
}

func TestFilteredPassesThroughBeforeRecovery(t *testing.T) {
	next := &sink[string]{}
	l := newLookup(t, &memTable{}, describe, next)
	c := processor.CommittableOf(part, 8)
	if err := l.Submit(processor.NewFiltered[event](c, time.Unix(1, 0))); err != nil {
		t.Fatalf("Submit filtered: %v", err)
	}
	if len(next.got) != 1 || !next.got[0].Filtered() || !next.got[0].Committable.Equal(c) {
		t.Fatalf("next got %v, want one filtered message carrying %s", next.got, c)
	}
}

func TestKeyOutcomes(t *testing.T) {
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name string
		join JoinFunc[event, string, string]
		user string
		// want is the forwarded payload; filtered means a filtered message instead.
		want        string
		filtered    bool
		wantInvalid bool
		wantErr     error
		wantMissing int64
		wantDropped int64
	}{
		{name: "found", join: describe, user: "u1", want: "Ada login"},
		{name: "missing passes", join: describe, user: "u9", want: "? login", wantMissing: 1},
		{name: "missing dropped", user: "u9", filtered: true, wantMissing: 1, wantDropped: 1,
			join: func(m processor.Message[event], name string, found bool) (string, error) {
				if !found {
					return "", ErrDrop
				}
				return name, nil
			}},
		{name: "missing invalid", user: "u9", wantInvalid: true, wantMissing: 1,
			join: func(m processor.Message[event], name string, found bool) (string, error) {
				if !found {
					return "", processor.Invalid(m, errors.New("unknown user"))
				}
				return name, nil
			}},
		{name: "join fails", user: "u1", wantErr: errBoom,
			join: func(processor.Message[event], string, bool) (string, error) { return "", errBoom }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := &sink[string]{}
			m := &counting{}
			table := &memTable{values: map[string]any{"u1": "Ada"}, recovered: true}
			l := newLookup(t, table, tc.join, next, strategies.WithMetrics(m))

			err := l.Submit(brokerMsg(41, tc.user, "login"))

			switch {
			case tc.wantInvalid:
				inv, ok := processor.AsInvalid(err)
				if !ok || inv.Partition != part || inv.Offset != 41 {
					t.Fatalf("Submit = %v, want an InvalidMessageError for %s offset 41", err, part)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Submit = %v, want it to wrap %v", err, tc.wantErr)
				}
				if _, ok := processor.AsInvalid(err); ok {
					t.Fatalf("Submit = %v, an invalid message error; want a plain one", err)
				}
			case err != nil:
				t.Fatalf("Submit: %v", err)
			}
			if tc.wantInvalid || tc.wantErr != nil {
				if len(next.got) != 0 {
					t.Fatalf("next got %v, want nothing", next.got)
				}
			} else {
				if len(next.got) != 1 {
					t.Fatalf("next got %d messages, want 1", len(next.got))
				}
				got := next.got[0]
				if got.Filtered() != tc.filtered || (!tc.filtered && got.Payload != tc.want) {
					t.Fatalf("next got %+v (filtered %v), want payload %q filtered %v", got, got.Filtered(), tc.want, tc.filtered)
				}
				if o, _ := got.Committable.Get(part); o != 42 {
					t.Fatalf("forwarded committable %s, want %s:42", got.Committable, part)
				}
			}
			if got := m.counts["strategies.lookup.missing_keys"]; got != tc.wantMissing {
				t.Errorf("missing_keys = %d, want %d", got, tc.wantMissing)
			}
			if got := m.counts["strategies.lookup.dropped_messages"]; got != tc.wantDropped {
				t.Errorf("dropped_messages = %d, want %d", got, tc.wantDropped)
			}
		})
	}
}

func TestKeyFunctionOutcomes(t *testing.T) {
	errBad := errors.New("no user")
	for _, tc := range []struct {
		name     string
		keyErr   func(processor.Message[event]) error
		filtered bool
		invalid  bool
	}{
		{name: "drop", keyErr: func(processor.Message[event]) error { return ErrDrop }, filtered: true},
		{name: "invalid", keyErr: func(m processor.Message[event]) error { return processor.Invalid(m, errBad) }, invalid: true},
		{name: "fatal", keyErr: func(processor.Message[event]) error { return errBad }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := &sink[string]{}
			key := func(m processor.Message[event]) (string, error) { return "", tc.keyErr(m) }
			l := New(&memTable{recovered: true}, key, describe, next)
			err := l.Submit(brokerMsg(3, "u1", "x"))
			switch {
			case tc.filtered:
				if err != nil || len(next.got) != 1 || !next.got[0].Filtered() {
					t.Fatalf("Submit = %v, next got %v; want one filtered message", err, next.got)
				}
			case tc.invalid:
				if _, ok := processor.AsInvalid(err); !ok {
					t.Fatalf("Submit = %v, want an InvalidMessageError", err)
				}
			default:
				if !errors.Is(err, errBad) || !strings.Contains(err.Error(), "key function") {
					t.Fatalf("Submit = %v, want an error naming the key function and wrapping %v", err, errBad)
				}
			}
		})
	}
}

func TestTableErrors(t *testing.T) {
	errDown := errors.New("view stopped")
	for _, tc := range []struct {
		name  string
		table *memTable
		want  string
	}{
		{"get fails", &memTable{recovered: true, getErr: errDown}, "view stopped"},
		{"wrong type", &memTable{recovered: true, values: map[string]any{"u1": 7}}, "is a int, not a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := &sink[string]{}
			l := newLookup(t, tc.table, describe, next)
			err := l.Submit(brokerMsg(0, "u1", "x"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Submit = %v, want an error containing %q", err, tc.want)
			}
			if tc.table.getErr != nil && !errors.Is(err, tc.table.getErr) {
				t.Fatalf("Submit = %v, want it to wrap %v", err, tc.table.getErr)
			}
			if len(next.got) != 0 {
				t.Fatalf("next got %v, want nothing", next.got)
			}
		})
	}
}

func TestDownstreamRejectionKeepsResult(t *testing.T) {
	table := &memTable{values: map[string]any{"u1": "Ada"}, recovered: true}
	next := &sink[string]{reject: true}
	calls := 0
	join := func(m processor.Message[event], name string, found bool) (string, error) {
		calls++
		return describe(m, name, found)
	}
	l := newLookup(t, table, join, next)

	if err := l.Submit(brokerMsg(0, "u1", "login")); err != nil {
		t.Fatalf("Submit with next rejecting = %v, want nil (result held)", err)
	}
	if err := l.Submit(brokerMsg(1, "u1", "logout")); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit while holding = %v, want ErrMessageRejected", err)
	}
	c := processor.CommittableOf(part, 5)
	if err := l.Submit(processor.NewFiltered[event](c, time.Time{})); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit filtered while holding = %v, want ErrMessageRejected", err)
	}
	if err := l.Poll(); err != nil {
		t.Fatalf("Poll with next rejecting: %v", err)
	}
	next.reject = false
	if err := l.Poll(); err != nil {
		t.Fatalf("Poll: %v", err)
	}
	if len(next.got) != 1 || next.got[0].Payload != "Ada login" {
		t.Fatalf("next got %v, want the held \"Ada login\"", next.got)
	}
	if calls != 1 {
		t.Fatalf("join ran %d times, want 1", calls)
	}
	if err := l.Submit(brokerMsg(1, "u1", "logout")); err != nil {
		t.Fatalf("Submit after the held result went: %v", err)
	}
	if next.polls != 2 {
		t.Fatalf("next polled %d times, want 2", next.polls)
	}
}

func TestJoin(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name      string
		ctx       context.Context
		acceptsIn int // the next step accepts after this many rejections; -1 never
		wantGot   int
	}{
		{"nothing held", context.Background(), 0, 0},
		{"held result delivered", context.Background(), 3, 1},
		{"timeout abandons held result", done, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := &memTable{values: map[string]any{"u1": "Ada"}, recovered: true}
			next := &countdown{rejections: tc.acceptsIn}
			l := newLookup(t, table, describe, next)
			if tc.acceptsIn != 0 {
				if err := l.Submit(brokerMsg(0, "u1", "login")); err != nil {
					t.Fatalf("Submit: %v", err)
				}
			}
			l.Close()
			if err := l.Join(tc.ctx); err != nil {
				t.Fatalf("Join: %v", err)
			}
			if len(next.got) != tc.wantGot {
				t.Fatalf("next got %d messages, want %d", len(next.got), tc.wantGot)
			}
			if !next.closed || !next.joined {
				t.Fatalf("next closed %v joined %v, want both", next.closed, next.joined)
			}
		})
	}
}

// countdown is a sink that rejects a number of times, then accepts; a negative count
// rejects for ever.
type countdown struct {
	sink[string]
	rejections int
	submitErr  error
}

func (c *countdown) Submit(m processor.Message[string]) error {
	if c.submitErr != nil {
		return c.submitErr
	}
	if c.rejections != 0 {
		c.rejections--
		return processor.ErrMessageRejected
	}
	return c.sink.Submit(m)
}

func TestTerminateDropsHeldResult(t *testing.T) {
	table := &memTable{values: map[string]any{"u1": "Ada"}, recovered: true}
	next := &sink[string]{reject: true}
	l := newLookup(t, table, describe, next)
	if err := l.Submit(brokerMsg(0, "u1", "login")); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	l.Terminate()
	if !next.terminated {
		t.Fatal("next step was not terminated")
	}
	next.reject = false
	if err := l.Poll(); err != nil {
		t.Fatalf("Poll: %v", err)
	}
	if len(next.got) != 0 {
		t.Fatalf("next got %v after Terminate, want nothing", next.got)
	}
}

func TestInvalidFromNextReleasesHeldResult(t *testing.T) {
	table := &memTable{values: map[string]any{"u1": "Ada"}, recovered: true}
	next := &countdown{rejections: 1}
	l := newLookup(t, table, describe, next)
	if err := l.Submit(brokerMsg(0, "u1", "login")); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	inv := &processor.InvalidMessageError{Partition: part, Offset: 0, Reason: "bad"}
	next.submitErr = inv
	if err := l.Poll(); !errors.Is(err, inv) {
		t.Fatalf("Poll = %v, want the next step's invalid message error", err)
	}
	next.submitErr = nil
	if err := l.Submit(brokerMsg(1, "u1", "logout")); err != nil {
		t.Fatalf("Submit after the held result was reported invalid = %v, want it taken", err)
	}
	if len(next.got) != 1 || next.got[0].Payload != "Ada logout" {
		t.Fatalf("next got %v, want only \"Ada logout\"", next.got)
	}
}

// BenchmarkLookup measures the strategy's own cost per message: recovery check, key,
// table read from a map, join and forwarding.
func BenchmarkLookup(b *testing.B) {
	table := &memTable{values: map[string]any{"u1": "Ada"}, recovered: true}
	l := New(table, byUser, describe, processor.Strategy[string](strategies.NewNoop[string]()))
	msg := brokerMsg(0, "u1", "login")
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Submit(msg); err != nil {
			b.Fatal(err)
		}
	}
}
