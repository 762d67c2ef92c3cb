package processortest

import (
	"context"
	"sync"
	"testing"

	"github.com/creekstream/creek/processor"
)

// Strategy is a terminal processor.Strategy that records what it is asked to do. By
// default Submit accepts every message and stages its committable, and Join stages
// the held messages and commits with force; OnSubmit, OnPoll and OnJoin change that.
// Strategies come from a Factory, whose Setup sets the hooks before the processor
// sees the strategy; it records close, join and terminate in its Events.
type Strategy[T any] struct {
	// ID is the strategy's place among those its Factory built, from 1.
	ID int
	// Partitions is the assignment the strategy was built for.
	Partitions []processor.Partition
	// Commit is the commit function the processor gave the factory.
	Commit processor.CommitFunc
	// OnSubmit decides a submit: return nil, processor.ErrMessageRejected or an
	// invalid-message error. Call Accept or Hold to record the message. Nil accepts
	// and stages.
	OnSubmit func(s *Strategy[T], m processor.Message[T]) error
	// OnPoll runs on every Poll and its error is Poll's. Nil does nothing.
	OnPoll func(s *Strategy[T]) error
	// OnJoin decides a join, after the join is recorded; ctx is the one the
	// processor gave Join. Nil releases the held messages and commits with force.
	OnJoin func(s *Strategy[T], ctx context.Context) error

	ev *Events

	mu         sync.Mutex
	submitted  []processor.Message[T]
	held       []processor.Message[T]
	attempts   int
	closed     bool
	terminated bool
}

// Submit counts the attempt and hands m to OnSubmit, or accepts and stages it. A
// submit after Close panics: the processor must never do that.
func (s *Strategy[T]) Submit(m processor.Message[T]) error {
	s.mu.Lock()
	s.attempts++
	if s.closed {
		s.mu.Unlock()
		panic("processortest: Submit after Close")
	}
	s.mu.Unlock()
	var err error
	if s.OnSubmit != nil {
		err = s.OnSubmit(s, m)
	} else {
		s.Accept(m)
		err = s.Commit(m.Committable, false)
	}
	s.ev.Notify()
	return err
}

// Accept records m as submitted.
func (s *Strategy[T]) Accept(m processor.Message[T]) {
	s.mu.Lock()
	s.submitted = append(s.submitted, m)
	s.mu.Unlock()
}

// Hold records m as submitted but stages its committable only at Release, like a
// step whose work is still under way.
func (s *Strategy[T]) Hold(m processor.Message[T]) {
	s.mu.Lock()
	s.submitted = append(s.submitted, m)
	s.held = append(s.held, m)
	s.mu.Unlock()
}

// Release stages the committables of the held messages.
func (s *Strategy[T]) Release() error {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, m := range held {
		if err := s.Commit(m.Committable, false); err != nil {
			return err
		}
	}
	return nil
}

// Poll runs OnPoll.
func (s *Strategy[T]) Poll() error {
	if s.OnPoll != nil {
		return s.OnPoll(s)
	}
	return nil
}

// Close records that no more messages will come.
func (s *Strategy[T]) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.ev.Add("strategy %d close", s.ID)
}

// Join runs OnJoin, or releases the held messages and commits with force.
func (s *Strategy[T]) Join(ctx context.Context) error {
	s.ev.Add("strategy %d join", s.ID)
	if s.OnJoin != nil {
		return s.OnJoin(s, ctx)
	}
	if err := s.Release(); err != nil {
		return err
	}
	return s.Commit(processor.Committable{}, true)
}

// Terminate records that the strategy was stopped without a commit.
func (s *Strategy[T]) Terminate() {
	s.mu.Lock()
	s.terminated = true
	s.mu.Unlock()
	s.ev.Add("strategy %d terminate", s.ID)
}

// Submitted returns the accepted and held messages, in submit order.
func (s *Strategy[T]) Submitted() []processor.Message[T] {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]processor.Message[T](nil), s.submitted...)
}

// Payloads returns the payloads of Submitted.
func (s *Strategy[T]) Payloads() []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]T, len(s.submitted))
	for i, m := range s.submitted {
		out[i] = m.Payload
	}
	return out
}

// Attempts returns how many times Submit was called, rejected calls included.
func (s *Strategy[T]) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Closed reports whether Close was called.
func (s *Strategy[T]) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Terminated reports whether Terminate was called.
func (s *Strategy[T]) Terminated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.terminated
}

// Factory is a processor.Factory that builds a Strategy per assignment, configured
// by Setup, and records create, partition changes and shutdown in its Events. It is
// also a processor.AssignmentWatcher and a processor.Shutdowner. Create it with
// NewFactory.
type Factory[T any] struct {
	ev    *Events
	setup func(s *Strategy[T])

	mu         sync.Mutex
	strategies []*Strategy[T]
	changes    [][]processor.Partition
	createErr  error
}

// NewFactory returns a Factory that records into ev, or into an Events of its own if
// ev is nil, and calls setup, if not nil, on every Strategy it builds before handing
// it out.
func NewFactory[T any](ev *Events, setup func(s *Strategy[T])) *Factory[T] {
	if ev == nil {
		ev = NewEvents()
	}
	return &Factory[T]{ev: ev, setup: setup}
}

// Events returns the Events the factory records into.
func (f *Factory[T]) Events() *Events { return f.ev }

// SetCreateError makes every later Create fail with err; nil clears it.
func (f *Factory[T]) SetCreateError(err error) {
	f.mu.Lock()
	f.createErr = err
	f.mu.Unlock()
}

// Create builds the next Strategy for partitions.
func (f *Factory[T]) Create(commit processor.CommitFunc, partitions []processor.Partition) (processor.Strategy[T], error) {
	f.mu.Lock()
	if f.createErr != nil {
		f.mu.Unlock()
		return nil, f.createErr
	}
	s := &Strategy[T]{ev: f.ev, Commit: commit, Partitions: partitions, ID: len(f.strategies) + 1}
	f.mu.Unlock()
	if f.setup != nil {
		f.setup(s)
	}
	f.mu.Lock()
	f.strategies = append(f.strategies, s)
	f.mu.Unlock()
	f.ev.Add("create %d %v", s.ID, partitions)
	return s, nil
}

// PartitionsChanged records the new assignment of a cooperative rebalance.
func (f *Factory[T]) PartitionsChanged(partitions []processor.Partition) {
	f.mu.Lock()
	f.changes = append(f.changes, partitions)
	f.mu.Unlock()
	f.ev.Add("changed %v", partitions)
}

// Shutdown records that the processor ended.
func (f *Factory[T]) Shutdown() { f.ev.Add("factory shutdown") }

// Strategy returns the i-th strategy built, from 0, failing the test if there is
// none yet.
func (f *Factory[T]) Strategy(t testing.TB, i int) *Strategy[T] {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.strategies) {
		t.Fatalf("strategy %d was never created (%d were)", i+1, len(f.strategies))
	}
	return f.strategies[i]
}

// Count returns how many strategies were built.
func (f *Factory[T]) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.strategies)
}

// Changes returns the assignments PartitionsChanged was told about, oldest first.
func (f *Factory[T]) Changes() [][]processor.Partition {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]processor.Partition(nil), f.changes...)
}
