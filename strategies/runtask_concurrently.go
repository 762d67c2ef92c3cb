package strategies

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/creekstream/creek/internal/inflight"
	"github.com/creekstream/creek/processor"
	"go.uber.org/zap"
)

// RunTaskConcurrently maps payloads through a function on a bounded pool of
// goroutines and forwards the results strictly in submit order, whatever order they
// complete in.
//
// In batched mode (NewRunTaskInBatches, Arroyo's RunTaskWithMultiprocessing) messages
// are collected into batches and each batch is one unit of work for the pool, which
// amortises the hand-over cost for cheap functions.
//
// Ownership: the loop goroutine (the caller of Submit, Poll, Join and Terminate) owns
// the queue and every task's bookkeeping; a worker owns a task's results from the
// moment it takes the task until it closes the task's done channel.
type RunTaskConcurrently[T, U any] struct {
	fn         func(context.Context, processor.Message[T]) (U, error)
	next       processor.Strategy[U]
	o          options
	maxPending int
	// batchSize is 0 in the unbatched mode, where every message is its own task.
	batchSize int
	batchWait time.Duration

	// work has room for maxPending tasks, so handing one over never blocks.
	work    chan *task[T, U]
	quit    chan struct{}
	workers sync.WaitGroup
	stopped bool

	// pending holds the tasks not yet fully forwarded, in submit order.
	pending inflight.Queue[*task[T, U]]
	// cur is the batch being collected, started at curStart; nil when none.
	cur      *task[T, U]
	curStart time.Time
}

// task is one unit of work: one message, or one batch in batched mode.
type task[T, U any] struct {
	in  []processor.Message[T]
	out []outcome[U]
	// done is closed by the worker once out is complete; it is nil for work that
	// needs no worker.
	done chan struct{}
	// sent counts the results already forwarded, so that after a rejection only the
	// remainder is offered again.
	sent int

	// one and oneOut back in and out in the unbatched mode, saving two allocations.
	one    [1]processor.Message[T]
	oneOut [1]outcome[U]
}

type outcome[U any] struct {
	msg processor.Message[U]
	err error
	// dropped is set for a message abandoned by fn (see abandoned).
	dropped bool
}

// NewRunTaskConcurrently returns a RunTaskConcurrently that runs fn on concurrency
// goroutines and holds at most maxPending messages that are running or waiting to be
// forwarded; Submit rejects beyond that. An error from fn surfaces from Poll in the
// message's place in the order: fn reports a message that can never be processed with
// processor.Invalid. fn gets the message's context; a message whose context was
// cancelled when fn failed is dropped (see abandoned).
//
// The workers start at once; Join or Terminate stops them.
func NewRunTaskConcurrently[T, U any](fn func(context.Context, processor.Message[T]) (U, error), concurrency, maxPending int, next processor.Strategy[U], opts ...Option) (*RunTaskConcurrently[T, U], error) {
	if concurrency < 1 {
		return nil, fmt.Errorf("strategies: run task concurrently: concurrency is %d, need at least 1 goroutine", concurrency)
	}
	if maxPending < 1 {
		return nil, fmt.Errorf("strategies: run task concurrently: maxPending is %d, need at least 1 message in flight", maxPending)
	}
	return newRunTaskConcurrently(fn, concurrency, maxPending, 0, 0, next, opts), nil
}

// ParallelBatchConfig configures NewRunTaskInBatches.
type ParallelBatchConfig struct {
	// Concurrency is the number of goroutines that process batches.
	Concurrency int
	// MaxPendingBatches bounds the batches running or waiting to be forwarded; a full
	// batch that finds no room makes Submit reject.
	MaxPendingBatches int
	// MaxBatchSize is the number of messages after which a batch is handed over.
	MaxBatchSize int
	// MaxBatchWait is how long after its first message a batch is handed over even
	// if it is not full.
	MaxBatchWait time.Duration
}

// NewRunTaskInBatches returns a RunTaskConcurrently in batched mode: messages are
// collected into batches of up to cfg.MaxBatchSize (or cfg.MaxBatchWait), each batch
// runs fn message by message on one of the pool's goroutines, and the results are
// forwarded in submit order. On downstream backpressure only the rest of a batch is
// offered again.
func NewRunTaskInBatches[T, U any](fn func(context.Context, processor.Message[T]) (U, error), cfg ParallelBatchConfig, next processor.Strategy[U], opts ...Option) (*RunTaskConcurrently[T, U], error) {
	switch {
	case cfg.Concurrency < 1:
		return nil, fmt.Errorf("strategies: run task in batches: Concurrency is %d, need at least 1 goroutine", cfg.Concurrency)
	case cfg.MaxPendingBatches < 1:
		return nil, fmt.Errorf("strategies: run task in batches: MaxPendingBatches is %d, need at least 1", cfg.MaxPendingBatches)
	case cfg.MaxBatchSize < 1:
		return nil, fmt.Errorf("strategies: run task in batches: MaxBatchSize is %d, need at least 1", cfg.MaxBatchSize)
	case cfg.MaxBatchWait <= 0:
		return nil, fmt.Errorf("strategies: run task in batches: MaxBatchWait is %v, need a positive duration so that a batch that never fills is still processed", cfg.MaxBatchWait)
	}
	return newRunTaskConcurrently(fn, cfg.Concurrency, cfg.MaxPendingBatches, cfg.MaxBatchSize, cfg.MaxBatchWait, next, opts), nil
}

func newRunTaskConcurrently[T, U any](fn func(context.Context, processor.Message[T]) (U, error), concurrency, maxPending, batchSize int, batchWait time.Duration, next processor.Strategy[U], opts []Option) *RunTaskConcurrently[T, U] {
	s := &RunTaskConcurrently[T, U]{
		fn: fn, next: next, o: buildOptions(opts),
		maxPending: maxPending, batchSize: batchSize, batchWait: batchWait,
		work: make(chan *task[T, U], maxPending),
		quit: make(chan struct{}),
	}
	s.workers.Add(concurrency)
	for range concurrency {
		go s.run()
	}
	return s
}

// run is a worker: it processes tasks until work is closed, and stops early, leaving
// its task unfinished, once quit is closed.
func (s *RunTaskConcurrently[T, U]) run() {
	defer s.workers.Done()
	for t := range s.work {
		for i, m := range t.in {
			select {
			case <-s.quit:
				return
			default:
			}
			t.out[i] = s.apply(m)
		}
		close(t.done)
	}
}

func (s *RunTaskConcurrently[T, U]) apply(m processor.Message[T]) outcome[U] {
	if m.Filtered() {
		return outcome[U]{msg: processor.AsFiltered[U](m)}
	}
	v, err := s.fn(m.Context(), m)
	if errors.Is(err, processor.ErrMessageRejected) {
		// A task runs once; it cannot ask to be offered again. Passed on as it is,
		// the rejection would read as the next step's backpressure and the message
		// would be dropped while later offsets are committed past it.
		err = fmt.Errorf("strategies: run task concurrently: the task returned ErrMessageRejected (%v); a task can fail or report processor.Invalid, not reject", err)
	}
	if err != nil {
		if abandoned(m) {
			return outcome[U]{dropped: true}
		}
		return outcome[U]{err: err}
	}
	return outcome[U]{msg: processor.WithPayload(m, v)}
}

// errStopped is returned by Submit after Join or Terminate.
var errStopped = errors.New("strategies: run task concurrently: submit after join or terminate")

// Submit hands msg to the pool. It rejects while maxPending messages (batches in
// batched mode) are in flight. Filtered messages keep their place in the order.
func (s *RunTaskConcurrently[T, U]) Submit(msg processor.Message[T]) error {
	if s.stopped {
		return errStopped
	}
	if s.batchSize == 0 {
		if s.pending.Len() >= s.maxPending {
			return processor.ErrMessageRejected
		}
		t := &task[T, U]{}
		t.one[0] = msg
		t.in, t.out = t.one[:], t.oneOut[:]
		if msg.Filtered() {
			t.out[0] = outcome[U]{msg: processor.AsFiltered[U](msg)}
			s.pending.Push(t, nil)
			return nil
		}
		t.done = make(chan struct{})
		s.pending.Push(t, t.done)
		s.work <- t
		return nil
	}
	if s.cur != nil && s.batchDue() && !s.dispatch() {
		return processor.ErrMessageRejected
	}
	if s.cur == nil {
		s.cur = &task[T, U]{in: make([]processor.Message[T], 0, s.batchSize)}
		s.curStart = s.o.Now()
	}
	s.cur.in = append(s.cur.in, msg)
	if len(s.cur.in) >= s.batchSize {
		// Without room the full batch waits; the next Submit rejects until Poll
		// has handed it over.
		s.dispatch()
	}
	return nil
}

func (s *RunTaskConcurrently[T, U]) batchDue() bool {
	return len(s.cur.in) >= s.batchSize || s.o.Now().Sub(s.curStart) >= s.batchWait
}

// dispatch hands the collected batch to the pool if fewer than maxPending batches are
// in flight, and reports whether it did.
func (s *RunTaskConcurrently[T, U]) dispatch() bool {
	if s.pending.Len() >= s.maxPending {
		s.o.Metrics.Increment("strategies.run_task_concurrently.batch.backpressure", 1)
		return false
	}
	t := s.cur
	s.cur = nil
	t.out = make([]outcome[U], len(t.in))
	t.done = make(chan struct{})
	s.o.Metrics.Gauge("strategies.run_task_concurrently.batch.size", float64(len(t.in)))
	s.pending.Push(t, t.done)
	s.work <- t
	return true
}

// Poll forwards the results that are ready at the head of the queue, without
// waiting for the others, and hands over a batch that is due.
func (s *RunTaskConcurrently[T, U]) Poll() error {
	if err := s.next.Poll(); err != nil {
		return err
	}
	if err := ignoreRejected(s.pending.Forward(s.forwardTask)); err != nil {
		return err
	}
	if s.cur != nil && s.batchDue() {
		s.dispatch()
	}
	return nil
}

// forwardTask forwards the unsent results of the finished task t. It returns
// ErrMessageRejected if the next step rejected one, and fn's error in place of its
// message; t stays at the head of the queue until all its results are passed on.
func (s *RunTaskConcurrently[T, U]) forwardTask(t *task[T, U]) error {
	for t.sent < len(t.out) {
		r := t.out[t.sent]
		if r.dropped {
			t.sent++
			continue
		}
		err := r.err
		if err == nil {
			err = s.next.Submit(r.msg)
		}
		if errors.Is(err, processor.ErrMessageRejected) {
			s.o.Metrics.Increment("strategies.run_task_concurrently.backpressure", 1)
			return err
		}
		// A result the next step failed or reported invalid is done with, as a held
		// message is (see inflight.Slot): offered again it would be reported again.
		t.sent++
		if err != nil {
			return err
		}
	}
	return nil
}

// Close does nothing: Join hands over a partial batch and waits for the results.
func (s *RunTaskConcurrently[T, U]) Close() {}

// Join hands over a partial batch, waits for each result in order and forwards it,
// until all are forwarded or ctx is done; the rest is abandoned. It then stops the
// workers and closes and joins the next step.
//
// An invalid message met during Join is abandoned with everything after it rather
// than committed past: the processor cannot dead-letter it now, and it is redelivered.
func (s *RunTaskConcurrently[T, U]) Join(ctx context.Context) error {
	err := s.finish(ctx)
	s.stop()
	// A worker inside fn exits as soon as fn returns; one that outlives ctx is left
	// to do so.
	inflight.Wait(ctx, &s.workers)
	s.pending.Clear()
	s.cur = nil
	s.next.Close()
	return errors.Join(err, s.next.Join(ctx))
}

func (s *RunTaskConcurrently[T, U]) finish(ctx context.Context) error {
	err := s.forwardAll(ctx)
	if isInvalid(err) {
		s.o.Logger.Warn("invalid message during join; abandoning it and the messages after it for redelivery", zap.Error(err))
		return nil
	}
	return err
}

// forwardAll hands over the partial batch as soon as there is room for it and
// forwards every result in order, until all are forwarded or ctx is done.
func (s *RunTaskConcurrently[T, U]) forwardAll(ctx context.Context) error {
	for s.cur != nil {
		if s.pending.Len() < s.maxPending {
			s.dispatch()
			break
		}
		if abandoned, err := s.pending.FinishHead(ctx, s.forwardTask, s.next.Poll); abandoned || err != nil {
			return err
		}
	}
	_, err := s.pending.Finish(ctx, s.forwardTask, s.next.Poll)
	return err
}

func isInvalid(err error) bool {
	_, ok := processor.AsInvalid(err)
	return ok
}

// stop tells the workers to finish: they skip what is left and exit.
func (s *RunTaskConcurrently[T, U]) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	close(s.quit)
	close(s.work)
}

// Terminate stops the workers without waiting for them, drops all results and
// terminates the next step.
func (s *RunTaskConcurrently[T, U]) Terminate() {
	s.stop()
	s.pending.Clear()
	s.cur = nil
	s.next.Terminate()
}
