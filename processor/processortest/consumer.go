package processortest

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/creekstream/creek/processor"
)

// Consumer is a processor.Consumer and processor.Fetcher over an in-memory log. Poll
// hands out the produced messages of assigned, unpaused partitions in the order
// they were produced. Rebalances asked for with Assign, Revoke, Lose or Rebalance run
// inside the next Poll, which then returns no message, as on a real consumer. It
// records subscribe, assign, revoke, lost, pause, resume, commit and close in its Events.
// It reports each partition's next offset as its high watermark (Watermarks), for
// tests of the processor's lag gauges.
// Create it with NewConsumer; it is safe for concurrent use.
type Consumer[T any] struct {
	ev *Events

	mu          sync.Mutex
	cb          processor.RebalanceCallbacks
	queue       []processor.Message[T]
	log         map[processor.Position]processor.Message[T]
	next        map[processor.Partition]int64
	actions     []func()
	paused      map[processor.Partition]bool
	assigned    map[processor.Partition]bool
	ignorePause bool
	commits     []map[processor.Partition]int64
	committed   map[processor.Partition]int64
	commitErr   error
	pollErr     error
	closed      bool
	fetches     int
	wake        chan struct{}
}

// NewConsumer returns a Consumer with an empty log that records into ev, or into
// an Events of its own if ev is nil.
func NewConsumer[T any](ev *Events) *Consumer[T] {
	if ev == nil {
		ev = NewEvents()
	}
	return &Consumer[T]{
		ev:        ev,
		log:       make(map[processor.Position]processor.Message[T]),
		next:      make(map[processor.Partition]int64),
		paused:    make(map[processor.Partition]bool),
		assigned:  make(map[processor.Partition]bool),
		committed: make(map[processor.Partition]int64),
		wake:      make(chan struct{}, 1),
	}
}

// Events returns the Events the consumer records into.
func (c *Consumer[T]) Events() *Events { return c.ev }

// poke ends a Poll that is waiting, so that it looks again.
func (c *Consumer[T]) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Produce appends payloads to partition p at its next offsets (0 for the first), as
// broker messages with the timestamp of the Unix epoch.
func (c *Consumer[T]) Produce(p processor.Partition, payloads ...T) {
	c.mu.Lock()
	for _, v := range payloads {
		o := c.next[p]
		c.next[p] = o + 1
		m := processor.NewBrokerMessage(v, p, o, time.Unix(0, 0))
		c.queue = append(c.queue, m)
		c.log[processor.Position{Partition: p, Offset: o}] = m
	}
	c.mu.Unlock()
	c.poke()
}

// Rebalance runs action inside the next Poll with the callbacks the processor
// subscribed with, and returns a channel closed once it ran.
func (c *Consumer[T]) Rebalance(action func(cb processor.RebalanceCallbacks)) <-chan struct{} {
	done := make(chan struct{})
	c.mu.Lock()
	c.actions = append(c.actions, func() {
		action(c.cb)
		close(done)
	})
	c.mu.Unlock()
	c.poke()
	return done
}

// Assign adds ps to the assignment in the next Poll and tells the processor
// (OnAssign); the returned channel is closed once that ran.
func (c *Consumer[T]) Assign(ps ...processor.Partition) <-chan struct{} {
	return c.Rebalance(func(cb processor.RebalanceCallbacks) {
		c.mu.Lock()
		for _, p := range ps {
			c.assigned[p] = true
		}
		c.mu.Unlock()
		cb.OnAssign(ps)
		c.ev.Add("assigned %v", ps)
	})
}

// Revoke tells the processor that ps are revoked (OnRevoke) in the next Poll, then
// takes them from the assignment; the returned channel is closed once that ran.
func (c *Consumer[T]) Revoke(ps ...processor.Partition) <-chan struct{} {
	return c.Rebalance(func(cb processor.RebalanceCallbacks) {
		cb.OnRevoke(ps)
		c.mu.Lock()
		for _, p := range ps {
			delete(c.assigned, p)
			delete(c.paused, p)
		}
		c.mu.Unlock()
		c.ev.Add("revoked %v", ps)
	})
}

// Lose tells the processor that ps are lost (OnLost, or OnRevoke if it set none) in
// the next Poll, as a client does when its group session expired or the member was
// fenced, then takes them from the assignment; the returned channel is closed once
// that ran. Like a real consumer it does not hand out again what it handed out
// before: a test produces what the partitions' next owner would read.
func (c *Consumer[T]) Lose(ps ...processor.Partition) <-chan struct{} {
	return c.Rebalance(func(cb processor.RebalanceCallbacks) {
		if cb.OnLost != nil {
			cb.OnLost(ps)
		} else {
			cb.OnRevoke(ps)
		}
		c.mu.Lock()
		for _, p := range ps {
			delete(c.assigned, p)
			delete(c.paused, p)
		}
		c.mu.Unlock()
		c.ev.Add("lost %v", ps)
	})
}

// AssignSilently adds ps to the assignment at once without telling the processor,
// like a broken client that hands out messages of partitions it never announced.
func (c *Consumer[T]) AssignSilently(ps ...processor.Partition) {
	c.mu.Lock()
	for _, p := range ps {
		c.assigned[p] = true
	}
	c.mu.Unlock()
	c.poke()
}

// SetIgnorePause makes Poll hand out messages of paused partitions too, like a
// client that ignores Pause.
func (c *Consumer[T]) SetIgnorePause(ignore bool) {
	c.mu.Lock()
	c.ignorePause = ignore
	c.mu.Unlock()
}

// SetPollError makes every later Poll fail with err; nil clears it.
func (c *Consumer[T]) SetPollError(err error) {
	c.mu.Lock()
	c.pollErr = err
	c.mu.Unlock()
	c.poke()
}

// SetCommitError makes every later Commit fail with err, committing nothing; nil
// clears it.
func (c *Consumer[T]) SetCommitError(err error) {
	c.mu.Lock()
	c.commitErr = err
	c.mu.Unlock()
}

// Subscribe keeps cb for the rebalances to come.
func (c *Consumer[T]) Subscribe(topics []string, cb processor.RebalanceCallbacks) error {
	c.mu.Lock()
	c.cb = cb
	c.mu.Unlock()
	c.ev.Add("subscribe %v", topics)
	return nil
}

// Poll runs the rebalances asked for, if any, and returns no message; otherwise it
// returns the oldest message of an assigned, unpaused partition, waiting up to
// timeout for one.
func (c *Consumer[T]) Poll(ctx context.Context, timeout time.Duration) (processor.Message[T], bool, error) {
	run, err := c.poll(ctx, timeout, 1)
	if len(run) == 0 {
		return processor.Message[T]{}, false, err
	}
	return run[0], true, nil
}

// PollRun is Poll for a run, as the Kafka backends hand them out: the oldest
// message of an assigned, unpaused partition and the messages of that partition
// produced right after it, appended to into up to its capacity.
func (c *Consumer[T]) PollRun(ctx context.Context, timeout time.Duration, into []processor.Message[T]) ([]processor.Message[T], error) {
	run, err := c.poll(ctx, timeout, cap(into)-len(into))
	return append(into, run...), err
}

// poll returns up to max messages of one partition, consecutive in the queue.
func (c *Consumer[T]) poll(ctx context.Context, timeout time.Duration, max int) ([]processor.Message[T], error) {
	if max <= 0 {
		return nil, nil
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		actions := c.actions
		c.actions = nil
		c.mu.Unlock()
		for _, a := range actions {
			a()
		}
		if len(actions) > 0 {
			// A rebalance ends the poll, as it does on a real consumer.
			return nil, nil
		}
		c.mu.Lock()
		if err := c.pollErr; err != nil {
			c.mu.Unlock()
			return nil, err
		}
		for i, m := range c.queue {
			pos, _ := m.Origin()
			if c.assigned[pos.Partition] && (c.ignorePause || !c.paused[pos.Partition]) {
				j := i + 1
				for j < len(c.queue) && j-i < max {
					if next, _ := c.queue[j].Origin(); next.Partition != pos.Partition {
						break
					}
					j++
				}
				run := slices.Clone(c.queue[i:j])
				c.queue = slices.Delete(c.queue, i, j)
				c.mu.Unlock()
				return run, nil
			}
		}
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-timer.C:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Pause stops Poll handing out messages of ps.
func (c *Consumer[T]) Pause(ps []processor.Partition) {
	c.mu.Lock()
	for _, p := range ps {
		c.paused[p] = true
	}
	c.mu.Unlock()
	c.ev.Add("pause %v", ps)
}

// Resume lets Poll hand out messages of ps again.
func (c *Consumer[T]) Resume(ps []processor.Partition) {
	c.mu.Lock()
	for _, p := range ps {
		delete(c.paused, p)
	}
	c.mu.Unlock()
	c.ev.Add("resume %v", ps)
	c.poke()
}

// Paused returns the paused partitions, sorted.
func (c *Consumer[T]) Paused() []processor.Partition {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sortedKeys(c.paused)
}

// Assignment returns the assigned partitions, sorted.
func (c *Consumer[T]) Assignment() []processor.Partition {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sortedKeys(c.assigned)
}

func sortedKeys(m map[processor.Partition]bool) []processor.Partition {
	var out []processor.Partition
	for p := range m {
		out = append(out, p)
	}
	processor.SortPartitions(out)
	return out
}

// Commit records offsets as committed, or fails with the error of SetCommitError.
func (c *Consumer[T]) Commit(ctx context.Context, offsets map[processor.Partition]int64) error {
	c.mu.Lock()
	err := c.commitErr
	if err == nil {
		c.commits = append(c.commits, offsets)
		for p, o := range offsets {
			c.committed[p] = o
		}
	}
	c.mu.Unlock()
	if err != nil {
		c.ev.Add("commit failed")
		return err
	}
	c.ev.Add("commit %s", processor.CommittableFromMap(offsets))
	return nil
}

// Close records that the consumer was closed.
func (c *Consumer[T]) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.ev.Add("consumer close")
	return nil
}

// Fetch returns the produced message at pos, as the DLQ does for a message it no
// longer buffers.
func (c *Consumer[T]) Fetch(ctx context.Context, pos processor.Position) (processor.Message[T], error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fetches++
	m, ok := c.log[pos]
	if !ok {
		return processor.Message[T]{}, errors.New("processortest: no message at " + pos.Partition.String() + " offset " + strconv.FormatInt(pos.Offset, 10))
	}
	return m, nil
}

// Watermarks calls yield for every partition produced to, assigned or not, with
// its next offset as the high watermark and the last offset committed for it (-1
// if none). The processor reports consumer lag from it (see processor's
// consumer.lag) and must leave out the partitions it has not assigned.
func (c *Consumer[T]) Watermarks(yield func(p processor.Partition, highWatermark, committed int64)) {
	type mark struct {
		p               processor.Partition
		high, committed int64
	}
	c.mu.Lock()
	marks := make([]mark, 0, len(c.next))
	for p, next := range c.next {
		committed, ok := c.committed[p]
		if !ok {
			committed = -1
		}
		marks = append(marks, mark{p, next, committed})
	}
	c.mu.Unlock()
	for _, m := range marks {
		yield(m.p, m.high, m.committed)
	}
}

// Committed returns the last offset committed for p (the next one to consume), or
// 0 if none was.
func (c *Consumer[T]) Committed(p processor.Partition) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed[p]
}

// Commits returns every successful commit's offsets, oldest first.
func (c *Consumer[T]) Commits() []map[processor.Partition]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.commits)
}

// Fetches returns how many times Fetch was called.
func (c *Consumer[T]) Fetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

// Closed reports whether Close was called.
func (c *Consumer[T]) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
