package processor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/creekstream/creek/internal/await"
)

type notifier = await.Notifier

// waitUntil waits, re-checking cond after every change n reports, until cond holds;
// it fails the test naming what it waited for after 10 s.
func waitUntil(t *testing.T, n *notifier, what string, cond func() bool) {
	t.Helper()
	await.Until(t, n, 10*time.Second, what, cond)
}

// events records, in order, what happened across the fakes.
type events struct {
	mu   sync.Mutex
	list []string
	n    *notifier
}

func (e *events) add(format string, args ...any) {
	e.mu.Lock()
	e.list = append(e.list, fmt.Sprintf(format, args...))
	e.mu.Unlock()
	e.n.Notify()
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.list)
}

func (e *events) has(s string) bool { return slices.Contains(e.all(), s) }

// index returns where s first happened, failing the test if it never did.
func (e *events) index(t *testing.T, s string) int {
	t.Helper()
	i := slices.Index(e.all(), s)
	if i < 0 {
		t.Fatalf("event %q never happened; events: %v", s, e.all())
	}
	return i
}

// fakeConsumer is a Consumer[string] over an in-memory log. Rebalances queued with
// rebalance run inside the next Poll, as a real consumer's callbacks do.
type fakeConsumer struct {
	ev *events

	mu          sync.Mutex
	cb          RebalanceCallbacks
	queue       []Message[string]
	log         map[Position]Message[string]
	actions     []func()
	paused      map[Partition]bool
	assigned    map[Partition]bool
	ignorePause bool
	commits     []map[Partition]int64
	committed   map[Partition]int64
	commitErr   error
	pollErr     error
	closed      bool
	fetches     int
	wake        chan struct{}
}

func newFakeConsumer(ev *events) *fakeConsumer {
	return &fakeConsumer{
		ev:        ev,
		log:       make(map[Position]Message[string]),
		paused:    make(map[Partition]bool),
		assigned:  make(map[Partition]bool),
		committed: make(map[Partition]int64),
		wake:      make(chan struct{}, 1),
	}
}

func (f *fakeConsumer) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// produce appends n messages to partition p, starting at offset from, with payloads
// "p/offset".
func (f *fakeConsumer) produce(p Partition, from, n int64) {
	f.mu.Lock()
	for o := from; o < from+n; o++ {
		m := NewBrokerMessage(fmt.Sprintf("%s@%d", p, o), p, o, time.Unix(0, 0))
		f.queue = append(f.queue, m)
		f.log[Position{Partition: p, Offset: o}] = m
	}
	f.mu.Unlock()
	f.poke()
}

// rebalance runs action inside the next Poll and returns a channel closed when it ran.
func (f *fakeConsumer) rebalance(action func(cb RebalanceCallbacks)) <-chan struct{} {
	done := make(chan struct{})
	f.mu.Lock()
	f.actions = append(f.actions, func() {
		action(f.cb)
		close(done)
	})
	f.mu.Unlock()
	f.poke()
	return done
}

func (f *fakeConsumer) assign(ps ...Partition) <-chan struct{} {
	return f.rebalance(func(cb RebalanceCallbacks) {
		f.mu.Lock()
		for _, p := range ps {
			f.assigned[p] = true
		}
		f.mu.Unlock()
		cb.OnAssign(ps)
		f.ev.add("assigned %v", ps)
	})
}

func (f *fakeConsumer) revoke(ps ...Partition) <-chan struct{} {
	return f.rebalance(func(cb RebalanceCallbacks) {
		cb.OnRevoke(ps)
		f.mu.Lock()
		for _, p := range ps {
			delete(f.assigned, p)
			delete(f.paused, p)
		}
		f.mu.Unlock()
		f.ev.add("revoked %v", ps)
	})
}

func (f *fakeConsumer) Subscribe(topics []string, cb RebalanceCallbacks) error {
	f.mu.Lock()
	f.cb = cb
	f.mu.Unlock()
	f.ev.add("subscribe %v", topics)
	return nil
}

func (f *fakeConsumer) Poll(ctx context.Context, timeout time.Duration) (Message[string], bool, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		f.mu.Lock()
		actions := f.actions
		f.actions = nil
		f.mu.Unlock()
		for _, a := range actions {
			a()
		}
		if len(actions) > 0 {
			// A rebalance ends the poll, as it does on a real consumer.
			return Message[string]{}, false, nil
		}
		f.mu.Lock()
		if err := f.pollErr; err != nil {
			f.mu.Unlock()
			return Message[string]{}, false, err
		}
		for i, m := range f.queue {
			pos, _ := m.Origin()
			if f.assigned[pos.Partition] && (f.ignorePause || !f.paused[pos.Partition]) {
				f.queue = slices.Delete(f.queue, i, i+1)
				f.mu.Unlock()
				return m, true, nil
			}
		}
		f.mu.Unlock()
		select {
		case <-f.wake:
		case <-timer.C:
			return Message[string]{}, false, nil
		case <-ctx.Done():
			return Message[string]{}, false, ctx.Err()
		}
	}
}

func (f *fakeConsumer) Pause(ps []Partition) {
	f.mu.Lock()
	for _, p := range ps {
		f.paused[p] = true
	}
	f.mu.Unlock()
	f.ev.add("pause %v", ps)
}

func (f *fakeConsumer) Resume(ps []Partition) {
	f.mu.Lock()
	for _, p := range ps {
		delete(f.paused, p)
	}
	f.mu.Unlock()
	f.ev.add("resume %v", ps)
	f.poke()
}

func (f *fakeConsumer) Paused() []Partition {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Partition
	for p := range f.paused {
		out = append(out, p)
	}
	SortPartitions(out)
	return out
}

func (f *fakeConsumer) Assignment() []Partition {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Partition
	for p := range f.assigned {
		out = append(out, p)
	}
	SortPartitions(out)
	return out
}

func (f *fakeConsumer) Commit(ctx context.Context, offsets map[Partition]int64) error {
	f.mu.Lock()
	err := f.commitErr
	if err == nil {
		f.commits = append(f.commits, offsets)
		for p, o := range offsets {
			f.committed[p] = o
		}
	}
	f.mu.Unlock()
	if err != nil {
		f.ev.add("commit failed")
		return err
	}
	f.ev.add("commit %s", CommittableFromMap(offsets))
	return nil
}

func (f *fakeConsumer) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.ev.add("consumer close")
	return nil
}

func (f *fakeConsumer) Fetch(ctx context.Context, pos Position) (Message[string], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetches++
	m, ok := f.log[pos]
	if !ok {
		return Message[string]{}, errors.New("no such offset")
	}
	return m, nil
}

func (f *fakeConsumer) committedOffset(p Partition) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.committed[p]
}

func (f *fakeConsumer) commitList() []map[Partition]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.commits)
}

// fakeStrategy is a terminal step. By default it accepts every message and stages
// its committable; hooks change that. It records everything it is asked to do.
type fakeStrategy struct {
	ev         *events
	commit     CommitFunc
	partitions []Partition
	id         int

	mu         sync.Mutex
	submitted  []Message[string]
	attempts   int
	closed     bool
	terminated bool
	// onSubmit decides a submit; nil accepts and stages.
	onSubmit func(s *fakeStrategy, m Message[string]) error
	// onPoll runs on every Poll.
	onPoll func(s *fakeStrategy) error
	// held are accepted messages whose committables are staged only by release.
	held []Message[string]
}

func (s *fakeStrategy) Submit(m Message[string]) error {
	s.mu.Lock()
	s.attempts++
	if s.closed {
		s.mu.Unlock()
		panic("submit after close")
	}
	hook := s.onSubmit
	s.mu.Unlock()
	var err error
	if hook != nil {
		err = hook(s, m)
	} else {
		s.accept(m)
		err = s.commit(m.Committable, false)
	}
	s.ev.n.Notify()
	return err
}

// accept records m as submitted.
func (s *fakeStrategy) accept(m Message[string]) {
	s.mu.Lock()
	s.submitted = append(s.submitted, m)
	s.mu.Unlock()
}

// hold records m as submitted but stages it only on release.
func (s *fakeStrategy) hold(m Message[string]) {
	s.mu.Lock()
	s.submitted = append(s.submitted, m)
	s.held = append(s.held, m)
	s.mu.Unlock()
}

// release stages the committables of the held messages.
func (s *fakeStrategy) release() error {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, m := range held {
		if err := s.commit(m.Committable, false); err != nil {
			return err
		}
	}
	return nil
}

func (s *fakeStrategy) Poll() error {
	s.mu.Lock()
	hook := s.onPoll
	s.mu.Unlock()
	if hook != nil {
		return hook(s)
	}
	return nil
}

func (s *fakeStrategy) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.ev.add("strategy %d close", s.id)
}

func (s *fakeStrategy) Join(ctx context.Context) error {
	s.ev.add("strategy %d join", s.id)
	if err := s.release(); err != nil {
		return err
	}
	return s.commit(Committable{}, true)
}

func (s *fakeStrategy) Terminate() {
	s.mu.Lock()
	s.terminated = true
	s.mu.Unlock()
	s.ev.add("strategy %d terminate", s.id)
}

func (s *fakeStrategy) payloads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.submitted))
	for i, m := range s.submitted {
		out[i] = m.Payload
	}
	return out
}

func (s *fakeStrategy) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// fakeFactory builds fakeStrategy chains, configured by setup, and records the
// assignments it is told about.
type fakeFactory struct {
	ev    *events
	setup func(s *fakeStrategy)

	mu         sync.Mutex
	strategies []*fakeStrategy
	changes    [][]Partition
	createErr  error
}

func (f *fakeFactory) Create(commit CommitFunc, ps []Partition) (Strategy[string], error) {
	f.mu.Lock()
	if f.createErr != nil {
		f.mu.Unlock()
		return nil, f.createErr
	}
	s := &fakeStrategy{ev: f.ev, commit: commit, partitions: ps, id: len(f.strategies) + 1}
	f.mu.Unlock()
	if f.setup != nil {
		f.setup(s)
	}
	f.mu.Lock()
	f.strategies = append(f.strategies, s)
	f.mu.Unlock()
	f.ev.add("create %d %v", s.id, ps)
	return s, nil
}

func (f *fakeFactory) PartitionsChanged(ps []Partition) {
	f.mu.Lock()
	f.changes = append(f.changes, ps)
	f.mu.Unlock()
	f.ev.add("changed %v", ps)
}

func (f *fakeFactory) Shutdown() { f.ev.add("factory shutdown") }

func (f *fakeFactory) strategy(t *testing.T, i int) *fakeStrategy {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.strategies) {
		t.Fatalf("strategy %d was never created (%d were)", i+1, len(f.strategies))
	}
	return f.strategies[i]
}

func (f *fakeFactory) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.strategies)
}

// harness wires a processor to the fakes and runs it.
type harness struct {
	t        *testing.T
	n        *notifier
	ev       *events
	consumer *fakeConsumer
	factory  *fakeFactory
	proc     *StreamProcessor[string]
	cancel   context.CancelFunc
	done     chan error
}

var (
	p0 = Partition{Topic: "t", Index: 0}
	p1 = Partition{Topic: "t", Index: 1}
)

func newHarness(t *testing.T, cfg Config[string], setup func(*fakeStrategy)) *harness {
	t.Helper()
	n := &notifier{}
	ev := &events{n: n}
	h := &harness{t: t, n: n, ev: ev, consumer: newFakeConsumer(ev), factory: &fakeFactory{ev: ev, setup: setup}}
	if cfg.Topics == nil {
		cfg.Topics = []string{"t"}
	}
	if cfg.PollTimeout == 0 {
		cfg.PollTimeout = 10 * time.Millisecond
	}
	if cfg.PausedPollTimeout == 0 {
		cfg.PausedPollTimeout = 5 * time.Millisecond
	}
	p, err := New[string](h.consumer, h.factory, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.proc = p
	return h
}

// start runs the processor; the test's cleanup stops it if the test did not.
func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- h.proc.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			h.t.Error("Run did not return within 10s of cancellation")
		}
	})
}

// stop cancels Run and returns its error.
func (h *harness) stop() error {
	h.t.Helper()
	h.cancel()
	return h.result()
}

// result waits for Run to return on its own.
func (h *harness) result() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatal("timed out after 10s waiting for Run to return")
		return nil
	}
}

// await waits for ch to close.
func (h *harness) await(ch <-chan struct{}, what string) {
	h.t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		h.t.Fatalf("timed out after 10s waiting for %s", what)
	}
}

func (h *harness) waitUntil(what string, cond func() bool) {
	h.t.Helper()
	waitUntil(h.t, h.n, what, cond)
}

// nopConsumer, nopFactory and nopDLQ satisfy the interfaces for tests of New.
type nopConsumer[T any] struct{}

func (nopConsumer[T]) Subscribe([]string, RebalanceCallbacks) error { return nil }
func (nopConsumer[T]) Poll(context.Context, time.Duration) (Message[T], bool, error) {
	return Message[T]{}, false, nil
}
func (nopConsumer[T]) Pause([]Partition)                                 {}
func (nopConsumer[T]) Resume([]Partition)                                {}
func (nopConsumer[T]) Paused() []Partition                               { return nil }
func (nopConsumer[T]) Assignment() []Partition                           { return nil }
func (nopConsumer[T]) Commit(context.Context, map[Partition]int64) error { return nil }
func (nopConsumer[T]) Close() error                                      { return nil }

func nopFactory[T any]() Factory[T] {
	return FactoryFunc[T](func(CommitFunc, []Partition) (Strategy[T], error) { return nil, errors.New("unused") })
}

type nopDLQ[T any] struct{}

func (nopDLQ[T]) Produce(context.Context, Message[T], *InvalidMessageError) *Delivery {
	d := NewDelivery()
	d.Resolve(Position{}, nil)
	return d
}

// recHB records the loop's phase for tests and passes ticks on to the watchdog's
// heartbeat.
type recHB struct {
	next heartbeat
	n    *notifier

	mu    sync.Mutex
	phase string
}

func (r *recHB) Tick() { r.next.Tick() }

func (r *recHB) TickPhase(phase string) {
	r.next.TickPhase(phase)
	r.record(phase)
}

func (r *recHB) SetPhase(phase string) {
	r.next.SetPhase(phase)
	r.record(phase)
}

func (r *recHB) record(phase string) {
	r.mu.Lock()
	changed := r.phase != phase
	r.phase = phase
	r.mu.Unlock()
	if changed {
		r.n.Notify()
	}
}

func (r *recHB) current() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

// recordPhases puts a recHB between the loop and its heartbeat. Call it before start.
func (h *harness) recordPhases() *recHB {
	r := &recHB{next: h.proc.hb, n: h.n}
	h.proc.hb = r
	return r
}
