// Package poll is the poll side both Kafka backends share: it hands the batches a
// client's goroutines queue out one record at a time, keeps what the loop paused
// or resumed, and turns the assignment changes those goroutines report into
// RebalanceCallbacks calls. It is generic over the record type: a backend queues
// its client's records and converts each as Poll returns it (AppendRun), or
// queues records converted already and hands out runs of the batch itself (Run).
//
// Two types split the work by goroutine. Events is the mailbox: the client's
// goroutines post assignments, revocations and a fatal error to it from any
// goroutine, under its own lock (taken after any lock of the backend's). Poller
// is the loop's: every method runs on the goroutine that calls Poll, and so do
// the callbacks; its state (cb, active, paused, held, ready, cur) has no lock.
package poll

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/processor"
)

// Batch is a run of records of partition P read at once. Epoch identifies the
// claim they were read under, so that records of an earlier claim of the same
// partition are recognised after a revocation.
type Batch[R any] struct {
	P     processor.Partition
	Epoch uint64
	Recs  []R
	// Bytes is what the backend counts the batch as while it is queued; Done gets
	// it back.
	Bytes int64
	next  int
}

func (b *Batch[R]) remaining() int { return len(b.Recs) - b.next }

// Revocation is a set of partitions that leave the assignment together. Done is
// closed once the loop has run the callback for them.
type Revocation struct {
	partitions []processor.Partition
	lost       bool
	done       chan struct{}
}

// Done is closed once the loop has run OnRevoke, or OnLost, for the revocation.
func (rv *Revocation) Done() <-chan struct{} { return rv.done }

// event is an assignment change waiting for the loop: exactly one field is set.
type event struct {
	assign map[processor.Partition]uint64
	revoke *Revocation
}

// Events carries what the client's goroutines tell the loop. The zero value is
// not usable; call NewEvents.
type Events struct {
	mu      sync.Mutex
	pending []event
	failure error
	// flag is set while pending or failure has something for the loop, so that a
	// Poll answered from the current batch takes the lock only then.
	flag atomic.Bool
	// wake holds at most one signal that flag was set.
	wake chan struct{}
}

// NewEvents returns an empty mailbox.
func NewEvents() *Events { return &Events{wake: make(chan struct{}, 1)} }

// Assign tells the loop that partitions were added, each with its claim's epoch.
func (e *Events) Assign(added map[processor.Partition]uint64) {
	if len(added) == 0 {
		return
	}
	e.mu.Lock()
	e.pending = append(e.pending, event{assign: added})
	e.flag.Store(true)
	e.mu.Unlock()
	e.signal()
}

// Revoke tells the loop that partitions leave the assignment, lost when they were
// taken away without a rebalance. A revocation of the same kind that the loop has
// not picked up yet takes them too, so that partitions leaving together reach one
// callback; the revocation they joined is returned.
func (e *Events) Revoke(partitions []processor.Partition, lost bool) *Revocation {
	e.mu.Lock()
	var rv *Revocation
	if n := len(e.pending); n > 0 && e.pending[n-1].revoke != nil && e.pending[n-1].revoke.lost == lost {
		rv = e.pending[n-1].revoke
		rv.partitions = append(rv.partitions, partitions...)
	} else {
		rv = &Revocation{partitions: slices.Clone(partitions), lost: lost, done: make(chan struct{})}
		e.pending = append(e.pending, event{revoke: rv})
	}
	e.flag.Store(true)
	e.mu.Unlock()
	e.signal()
	return rv
}

// Fail records a fatal error, which every later Poll returns. The first one stays.
func (e *Events) Fail(err error) {
	e.mu.Lock()
	if e.failure == nil {
		e.failure = err
	}
	e.flag.Store(true)
	e.mu.Unlock()
	e.signal()
}

func (e *Events) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// take empties the mailbox; the failure stays, and so does flag if there is one.
func (e *Events) take() ([]event, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	events := e.pending
	e.pending = nil
	e.flag.Store(e.failure != nil)
	return events, e.failure
}

// Client is what a Poller needs from its backend.
type Client[R any] struct {
	// Queue carries the batches of the client's readers. A batch of a claim that
	// the loop has not been told of yet must follow its assignment event.
	Queue <-chan Batch[R]
	// Closing is closed when the consumer closes; Poll then returns Closed.
	Closing <-chan struct{}
	Closed  error
	// Pause and Resume stop and restart fetching partitions, by topic.
	Pause, Resume func(byTopic map[string][]int32)
	// Released, if set, runs after the callback of a revocation and before its
	// Done is closed; paused holds its partitions that were paused, by topic.
	Released func(rv *Revocation, paused map[string][]int32)
	// Recycle, if set, takes back the slice of a batch once nothing refers to it.
	Recycle func(recs []R)
	// Done, if set, is told the Bytes of a batch once it is used up or dropped.
	Done func(bytes int64)
}

// Poller is the loop's side of a consumer. Every method belongs to the goroutine
// that calls Poll.
type Poller[R any] struct {
	client Client[R]
	ev     *Events
	log    *zap.Logger
	cb     processor.RebalanceCallbacks

	active map[processor.Partition]uint64 // the assignment as the loop knows it
	paused map[processor.Partition]bool
	held   map[processor.Partition][]Batch[R] // read while paused, delivered on Resume
	ready  []Batch[R]                         // resumed batches, delivered before the queue
	cur    Batch[R]                           // the batch Poll is handing out
}

// NewPoller returns the loop's side over ev and client.
func NewPoller[R any](ev *Events, client Client[R]) *Poller[R] {
	return &Poller[R]{
		client: client,
		ev:     ev,
		log:    zap.NewNop(),
		active: make(map[processor.Partition]uint64),
		paused: make(map[processor.Partition]bool),
		held:   make(map[processor.Partition][]Batch[R]),
	}
}

// Start sets the callbacks and the logger; the backend's Subscribe calls it before
// anything is queued.
func (p *Poller[R]) Start(cb processor.RebalanceCallbacks, log *zap.Logger) {
	p.cb = cb
	p.log = log
}

// Ready returns the next record of the current batch and its partition if Poll
// would return it at once: there is one and no event is pending. It is small
// enough to inline into the backend's Poll, which calls Poll when ok is false. A
// record handed out stays in its batch's slice until the batch is used up.
func (p *Poller[R]) Ready() (r R, part processor.Partition, ok bool) {
	if i := p.cur.next; i < len(p.cur.Recs) && !p.ev.flag.Load() {
		p.cur.next++
		return p.cur.Recs[i], p.cur.P, true
	}
	return r, part, false
}

// ReadyRun is Ready for a run: up to max records of the current batch, all of
// partition part, if PollRun would return them at once. The slice is the batch's
// own and is valid until the next call of any Poller method.
func (p *Poller[R]) ReadyRun(max int) (recs []R, part processor.Partition, ok bool) {
	if i := p.cur.next; i < len(p.cur.Recs) && !p.ev.flag.Load() {
		j := min(len(p.cur.Recs), i+max)
		p.cur.next = j
		return p.cur.Recs[i:j:j], p.cur.P, true
	}
	return nil, part, false
}

// Poll returns the next record and its partition, waiting at most timeout.
// Rebalance callbacks run inside it. ok is false when no record came in time.
func (p *Poller[R]) Poll(ctx context.Context, timeout time.Duration) (r R, part processor.Partition, ok bool, err error) {
	if ok, err = p.await(ctx, timeout); !ok {
		return r, part, false, err
	}
	p.cur.next++
	return p.cur.Recs[p.cur.next-1], p.cur.P, true, nil
}

// PollRun is Poll for a run: it returns up to max records of one partition, in
// offset order, waiting at most timeout for the first; recs is empty when none
// came in time. The slice is the batch's own and is valid until the next call of
// any Poller method.
func (p *Poller[R]) PollRun(ctx context.Context, timeout time.Duration, max int) (recs []R, part processor.Partition, err error) {
	if ok, err := p.await(ctx, timeout); !ok {
		return nil, part, err
	}
	i := p.cur.next
	j := min(len(p.cur.Recs), i+max)
	p.cur.next = j
	return p.cur.Recs[i:j:j], p.cur.P, nil
}

// Run is the body of a backend's PollRun whose records are the processor's
// messages already: up to max of one partition, taking those ready at once or
// else waiting at most timeout for the first. The slice is the batch's own, valid
// until the next call of any Poller method; it is empty when none came in time.
func (p *Poller[R]) Run(ctx context.Context, timeout time.Duration, max int) ([]R, error) {
	if recs, _, ok := p.ReadyRun(max); ok {
		return recs, nil
	}
	recs, _, err := p.PollRun(ctx, timeout, max)
	return recs, err
}

// AppendRun is the body of a backend's PollRun: it appends to into, up to its
// capacity, one partition's run of records converted by conv, taking those ready
// at once or else waiting at most timeout for the first, and returns the extended
// slice, which is into itself when none came.
func (p *Poller[R]) AppendRun(ctx context.Context, timeout time.Duration, into []processor.Message[processor.KafkaPayload], conv func(processor.Partition, R) processor.Message[processor.KafkaPayload]) ([]processor.Message[processor.KafkaPayload], error) {
	room := cap(into) - len(into)
	if room <= 0 {
		return into, nil
	}
	recs, part, ok := p.ReadyRun(room)
	if !ok {
		var err error
		if recs, part, err = p.PollRun(ctx, timeout, room); len(recs) == 0 {
			return into, err
		}
	}
	n := len(into)
	into = into[:n+len(recs)]
	for i, r := range recs {
		into[n+i] = conv(part, r)
	}
	return into, nil
}

// await runs the pending events and waits at most timeout until the current
// batch has a record to hand out; ok says whether it has.
func (p *Poller[R]) await(ctx context.Context, timeout time.Duration) (ok bool, err error) {
	if p.ev.flag.Load() {
		if err := p.runEvents(); err != nil {
			return false, err
		}
	}
	if p.fill() {
		return true, nil
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := p.runEvents(); err != nil {
			return false, err
		}
		if p.fill() {
			return true, nil
		}
		select {
		case b := <-p.client.Queue:
			p.take(b)
			continue
		default:
		}
		if timer == nil {
			timer = time.NewTimer(timeout)
		}
		select {
		case b := <-p.client.Queue:
			p.take(b)
		case <-p.ev.wake:
		case <-timer.C:
			return false, p.runEvents()
		case <-ctx.Done():
			return false, ctx.Err()
		case <-p.client.Closing:
			return false, p.client.Closed
		}
	}
}

// Buffered returns how many records Poll can hand out without waiting, unless a
// rebalance intervenes.
func (p *Poller[R]) Buffered() int { return p.cur.remaining() }

// fill reports whether the current batch has a record left, making the next
// batch resumed after a pause current if it has not, without touching a channel.
func (p *Poller[R]) fill() bool {
	for {
		if p.cur.next < len(p.cur.Recs) {
			return true
		}
		p.dropCur()
		if len(p.ready) == 0 {
			return false
		}
		b := p.ready[0]
		p.ready[0] = Batch[R]{}
		p.ready = p.ready[1:]
		p.take(b)
	}
}

// take makes b the current batch, which must be used up, if its partition may be
// delivered now. Batches of claims the loop no longer owns are dropped; those of
// paused partitions are held until Resume.
func (p *Poller[R]) take(b Batch[R]) {
	if epoch, ok := p.active[b.P]; !ok || epoch != b.Epoch {
		// A batch follows its claim's assignment event, which may still be
		// pending; a revocation can be pending too. An error stays pending and
		// Poll returns it.
		_ = p.runEvents()
		if epoch, ok := p.active[b.P]; !ok || epoch != b.Epoch {
			p.recycle(b)
			return
		}
	}
	if p.paused[b.P] {
		p.held[b.P] = append(p.held[b.P], b)
		return
	}
	p.cur = b
}

// dropCur gives up what is left of the current batch.
func (p *Poller[R]) dropCur() {
	if p.cur.Recs != nil {
		p.recycle(p.cur)
	}
	p.cur = Batch[R]{}
}

func (p *Poller[R]) recycle(b Batch[R]) {
	if p.client.Recycle != nil {
		clear(b.Recs)
		p.client.Recycle(b.Recs[:0])
	}
	if p.client.Done != nil {
		p.client.Done(b.Bytes)
	}
}

// runEvents applies pending assignment changes in the order they happened and
// runs the callbacks for them. It returns the consumer's fatal error, if any.
func (p *Poller[R]) runEvents() error {
	events, failure := p.ev.take()
	for _, ev := range events {
		if ev.assign != nil {
			maps.Copy(p.active, ev.assign)
			added := sortedPartitions(maps.Keys(ev.assign))
			p.log.Info("partitions assigned", zap.Stringers("partitions", added))
			if p.cb.OnAssign != nil {
				p.cb.OnAssign(added)
			}
			continue
		}
		p.revoke(ev.revoke)
	}
	return failure
}

// revoke runs the callback of rv and forgets its partitions.
func (p *Poller[R]) revoke(rv *Revocation) {
	parts := rv.partitions
	processor.SortPartitions(parts)
	switch {
	case rv.lost && p.cb.OnLost != nil:
		p.log.Warn("partitions lost: the group session ended without a rebalance; their offsets are not committed",
			zap.Stringers("partitions", parts))
		p.cb.OnLost(parts)
	case rv.lost:
		p.log.Warn("partitions lost: the group session ended without a rebalance; revoking them",
			zap.Stringers("partitions", parts))
		if p.cb.OnRevoke != nil {
			p.cb.OnRevoke(parts)
		}
	default:
		p.log.Info("partitions revoked", zap.Stringers("partitions", parts))
		if p.cb.OnRevoke != nil {
			p.cb.OnRevoke(parts)
		}
	}
	var paused map[string][]int32
	for _, q := range parts {
		if p.cur.P == q {
			p.dropCur()
		}
		if p.paused[q] {
			if paused == nil {
				paused = make(map[string][]int32)
			}
			paused[q.Topic] = append(paused[q.Topic], q.Index)
		}
		for _, b := range p.held[q] {
			p.recycle(b)
		}
		delete(p.active, q)
		delete(p.paused, q)
		delete(p.held, q)
	}
	p.ready = slices.DeleteFunc(p.ready, func(b Batch[R]) bool {
		if slices.Contains(parts, b.P) {
			p.recycle(b)
			return true
		}
		return false
	})
	if p.client.Released != nil {
		p.client.Released(rv, paused)
	}
	close(rv.done)
}

// Pause stops delivery and fetching of partitions of the current assignment
// without leaving the group.
func (p *Poller[R]) Pause(partitions []processor.Partition) {
	byTopic := make(map[string][]int32)
	for _, q := range partitions {
		if _, ok := p.active[q]; ok && !p.paused[q] {
			if p.cur.P == q && p.cur.remaining() > 0 {
				p.held[q] = append(p.held[q], p.cur)
				p.cur = Batch[R]{}
			}
			p.paused[q] = true
			byTopic[q.Topic] = append(byTopic[q.Topic], q.Index)
		}
	}
	if len(byTopic) > 0 {
		p.client.Pause(byTopic)
	}
}

// Resume undoes Pause. Records read before the pause took effect are delivered
// first.
func (p *Poller[R]) Resume(partitions []processor.Partition) {
	byTopic := make(map[string][]int32)
	for _, q := range partitions {
		if !p.paused[q] {
			continue
		}
		delete(p.paused, q)
		byTopic[q.Topic] = append(byTopic[q.Topic], q.Index)
		p.ready = append(p.ready, p.held[q]...)
		delete(p.held, q)
	}
	if len(byTopic) > 0 {
		p.client.Resume(byTopic)
	}
}

// Paused returns the paused partitions, sorted.
func (p *Poller[R]) Paused() []processor.Partition { return sortedPartitions(maps.Keys(p.paused)) }

// Assignment returns the partitions assigned as of the last callback, sorted.
func (p *Poller[R]) Assignment() []processor.Partition {
	return sortedPartitions(maps.Keys(p.active))
}

func sortedPartitions(seq func(func(processor.Partition) bool)) []processor.Partition {
	ps := slices.Collect(seq)
	processor.SortPartitions(ps)
	return ps
}
