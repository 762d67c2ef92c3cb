package segments

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
)

// ErrRedisLost is what the chain fails with when Redis lost the span buffer's data
// (its marker is gone), or when the commit of a partition has waited so long for a
// flush that Redis can no longer hold what it waits for. The spans whose offsets
// were not committed must be read again: Consumer.Run does that by joining the
// group anew; a service that wires its own processor with Factory must do the same
// when processor.Run returns an error wrapping it.
var ErrRedisLost = store.ErrRedisLost

// CommitMode says when the span buffer commits a batch's offsets.
type CommitMode int

const (
	// CommitAfterFlush (the default) commits a batch's offsets only once every
	// segment it wrote into has been produced and acknowledged, or dropped with a
	// count and a log: what Redis loses is read again from Kafka.
	CommitAfterFlush CommitMode = iota
	// CommitAfterIngest commits a batch's offsets as soon as it is in Redis, as
	// Sentry's span buffer does: what Redis loses before it is flushed is lost.
	CommitAfterIngest
)

// DefaultMaxUncommittedSpans bounds the spans whose offsets wait for their flush.
const DefaultMaxUncommittedSpans = 1_000_000

// commitTracker holds, per partition and in offset order, the batches whose offsets
// wait for their spans to be flushed, and which payload sets each still waits for.
//
// A batch is begun (on the loop goroutine, in the order batches are submitted to
// ingest), its payload sets are registered by the goroutine writing it before its
// write is sent to Redis, and flusher workers cover payload sets once the segments
// holding them are produced and removed from Redis (Done has returned). The loop
// goroutine releases the offsets of the batches at the head of each partition whose
// sets are all covered. mu guards everything.
//
// Why registering before the write and covering after Done is enough: a write
// either adds its payload set to a segment, which a later flush loads and covers,
// or finds the set there already (the same spans, redelivered or retried), which
// leaves the segment as it is. In the second case the set is in Redis until the
// Done of the flush that loaded it removes it, so that flush's covering, which
// comes after its Done, comes after the write and so after the registration.
type commitTracker struct {
	mu sync.Mutex
	// parts holds each partition's batches in offset order.
	parts map[processor.Partition]*partQueue
	// waiting maps a payload set to the batch parts that wait for it.
	waiting map[string][]*batchPart
	// spans counts the spans of the batches begun and not released.
	spans int
}

// trackedBatch is one batch's bookkeeping, by shard.
type trackedBatch struct {
	parts      map[int32]*batchPart
	registered bool
}

// batchPart is what one batch holds of one partition.
type batchPart struct {
	spans int
	// remaining counts the payload sets not yet covered; it means nothing until
	// registered.
	remaining  int
	registered bool
	// gone is set when the partition was revoked: nothing waits for it any more.
	gone bool
}

type partQueue struct {
	entries []queuedOffset
	head    int
}

// queuedOffset is one batch's committable offset on one partition.
type queuedOffset struct {
	next  int64
	part  *batchPart // nil: nothing to wait for (a filtered message)
	ts    time.Time
	begun time.Time
}

func newCommitTracker() *commitTracker {
	return &commitTracker{parts: make(map[processor.Partition]*partQueue), waiting: make(map[string][]*batchPart)}
}

// begin records a batch: its committable offsets and its spans by shard.
func (t *commitTracker) begin(c processor.Committable, spans map[int32]int, ts time.Time) *trackedBatch {
	tb := &trackedBatch{parts: make(map[int32]*batchPart, len(spans))}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, next := range c.All() {
		var part *batchPart
		if n := spans[p.Index]; n > 0 {
			part = &batchPart{spans: n}
			tb.parts[p.Index] = part
			t.spans += n
		}
		q := t.parts[p]
		if q == nil {
			q = &partQueue{}
			t.parts[p] = q
		}
		q.entries = append(q.entries, queuedOffset{next: next, part: part, ts: ts, begun: now})
	}
	return tb
}

// register records the payload sets tb's spans are written to, by shard. It is
// called once, before the batch's first write.
func (t *commitTracker) register(tb *trackedBatch, salts map[int32][]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tb.registered {
		return
	}
	tb.registered = true
	for shard, part := range tb.parts {
		part.registered = true
		if part.gone {
			continue
		}
		for _, s := range salts[shard] {
			t.waiting[s] = append(t.waiting[s], part)
			part.remaining++
		}
	}
}

// cover records that the payload sets salts have been flushed: produced and
// acknowledged, or dropped with a count.
func (t *commitTracker) cover(salts []string) {
	if len(salts) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range salts {
		for _, part := range t.waiting[s] {
			part.remaining--
		}
		delete(t.waiting, s)
	}
}

// release takes the batches at the head of each partition whose spans are all
// flushed and returns the offsets to commit and the latest timestamp among them. It
// fails when a partition's head has waited longer than maxAge.
func (t *commitTracker) release(maxAge time.Duration) (map[processor.Partition]int64, time.Time, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out map[processor.Partition]int64
	var ts time.Time
	now := time.Now()
	for p, q := range t.parts {
		for q.head < len(q.entries) {
			e := q.entries[q.head]
			if e.part != nil && (!e.part.registered || e.part.remaining > 0) {
				if maxAge > 0 && now.Sub(e.begun) > maxAge {
					return nil, time.Time{}, fmt.Errorf("%w: partition %s has waited %v for the flush of offsets below %d, longer than Redis keeps a segment",
						ErrRedisLost, p, now.Sub(e.begun).Round(time.Second), e.next)
				}
				break
			}
			if out == nil {
				out = make(map[processor.Partition]int64)
			}
			out[p] = e.next
			if e.ts.After(ts) {
				ts = e.ts
			}
			if e.part != nil {
				t.spans -= e.part.spans
			}
			q.entries[q.head] = queuedOffset{}
			q.head++
		}
		if q.head == len(q.entries) {
			q.entries, q.head = q.entries[:0], 0
		} else if q.head > 1024 && q.head > len(q.entries)/2 {
			q.entries, q.head = append(q.entries[:0], q.entries[q.head:]...), 0
		}
	}
	return out, ts, nil
}

// keep forgets the partitions whose index is not in shards: they were revoked, and
// their offsets are another member's to commit.
func (t *commitTracker) keep(shards []int32) {
	kept := make(map[int32]bool, len(shards))
	for _, s := range shards {
		kept[s] = true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	dropped := false
	for p, q := range t.parts {
		if kept[p.Index] {
			continue
		}
		for _, e := range q.entries[q.head:] {
			if e.part != nil {
				e.part.gone = true
				t.spans -= e.part.spans
			}
		}
		delete(t.parts, p)
		dropped = true
	}
	if !dropped {
		return
	}
	for s, parts := range t.waiting {
		live := parts[:0]
		for _, part := range parts {
			if !part.gone {
				live = append(live, part)
			}
		}
		if len(live) == 0 {
			delete(t.waiting, s)
		} else {
			t.waiting[s] = live
		}
	}
}

// pending returns the number of spans whose offsets wait for their flush.
func (t *commitTracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.spans
}

// commitGate is the step after the flusher when offsets are committed behind the
// flush. The ingest step records each batch's offsets in the tracker already, in
// order; the gate hands the next step (CommitOffsets) the offsets the tracker
// releases, one message per release, and ignores the messages it is given. Its
// methods run on the loop goroutine.
type commitGate struct {
	tracker *commitTracker
	next    processor.Strategy[int]
	// maxAge is how long a partition's commit may wait for a flush before the chain
	// fails with ErrRedisLost.
	maxAge time.Duration
	log    *zap.Logger
}

// Submit releases what is flushed; msg's offsets are in the tracker already.
func (g *commitGate) Submit(processor.Message[int]) error { return g.forward() }

// Poll forwards what the tracker releases and polls the next step.
func (g *commitGate) Poll() error {
	if err := g.forward(); err != nil {
		return err
	}
	return g.next.Poll()
}

func (g *commitGate) forward() error {
	offsets, ts, err := g.tracker.release(g.maxAge)
	if err != nil {
		g.log.Error("span buffer commit stalled; reading the partitions again from their committed offsets", zap.Error(err))
		return err
	}
	if len(offsets) == 0 {
		return nil
	}
	return g.next.Submit(processor.NewMessage(0, processor.CommittableFromMap(offsets), ts))
}

// Close does nothing: Join closes the next step.
func (g *commitGate) Close() {}

// Join forwards what is flushed by now (the flusher's workers have stopped) and
// joins the next step, which commits it. The rest is read again by the next owner.
func (g *commitGate) Join(ctx context.Context) error {
	err := g.forward()
	if errors.Is(err, ErrRedisLost) {
		// Nothing past it is committed either way.
		err = nil
	}
	g.next.Close()
	return errors.Join(err, g.next.Join(ctx))
}

// Terminate terminates the next step.
func (g *commitGate) Terminate() { g.next.Terminate() }

var _ processor.Strategy[int] = (*commitGate)(nil)
