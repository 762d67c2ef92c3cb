package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// FlushedSegment is a segment taken out of the buffer by a flush. Produce its
// Messages, then hand it to Done.
type FlushedSegment struct {
	// Key is the segment key, span-buf:s:{<project>:<trace>}:<root>.
	Key string
	// QueueKey is the flush queue the segment was taken from.
	QueueKey  string
	ProjectID uint64
	TraceID   string
	// RootID is the segment's root span id (or, for a segment without its root, the
	// id its spans hang under; for a detached subsegment, its salt).
	RootID string
	// Spans are the output spans: each input span with is_segment and
	// attributes["sentry.segment.id"] set.
	Spans [][]byte

	pt        string
	queues    []queueEntry
	salts     []string
	skip      []string // skipPrefix members: spans flushed already
	spanIDs   []string
	ingested  int64
	bytes     int64
	lockToken string
	// metaKeys are the member keys, span count and byte count keys.
	metaKeys [3]string
}

type queueEntry struct {
	key      string
	deadline float64
}

// FlushStats says what one flush did.
type FlushStats struct {
	// Segments and Spans count what the flush returned.
	Segments, Spans int
	// Dropped counts spans that were ingested but whose payloads were gone (expired or
	// evicted from Redis) when the segment was loaded.
	Dropped int
	// Expired counts queue entries whose segment had no data left; they are removed.
	Expired int
	// LockContention counts segments skipped because another flusher held their lock.
	LockContention int
	// Shards has one entry per shard flushed, in the order given.
	Shards []ShardStats
	// DroppedSalts are the payload sets (as FlushedSegment.Salts names them) of the
	// segments the flush removed because none of their payloads were left: their
	// spans are dropped, counted in Dropped and logged, and will never be flushed.
	DroppedSalts []string
}

// ShardStats is one shard's part of a flush.
type ShardStats struct {
	Shard int32
	// QueueSize is the number of segments in the shard's queue before the flush.
	QueueSize int64
	// Due is the number of segments taken from the queue.
	Due int
	// AtLimit is true when Due reached the per-shard limit: more segments may be due.
	AtLimit bool
	// Lag is how far the shard's time was past the deadline of its oldest due
	// segment when the queue was read: how far the flush is behind. 0 when nothing
	// was due.
	Lag time.Duration
}

// Flush takes from the queues of shards the segments whose deadline is at or before
// the shard's time on clock, at most ceil(MaxFlushSegments / assigned) per shard,
// and loads their spans; assigned is the number of shards the whole consumer owns,
// of which shards may be a part (a flusher worker flushes its own). The result is
// keyed by segment key. Nothing is removed from Redis until Done, so a crash before
// that flushes the segments again.
//
// The clock is read twice: before the queues are read and once they have been. A
// segment due at the first time but not at the second is left for a later flush:
// the span buffer's clock holds a shard back while spans read from it wait for
// ingest, and such spans may have been ingested between the two reads.
//
// With FlushLockTTL set, a segment locked by another flusher is skipped and counted.
// Queue entries without data are removed and counted as expired.
func (b *Buffer) Flush(ctx context.Context, shards []int32, assigned int, clock Clock) (map[string]FlushedSegment, FlushStats, error) {
	start := time.Now()
	stats := FlushStats{Shards: make([]ShardStats, len(shards))}
	if len(shards) == 0 {
		return map[string]FlushedSegment{}, stats, nil
	}
	assigned = max(assigned, len(shards), 1)
	limit := (b.cfg.MaxFlushSegments + assigned - 1) / assigned
	times := make([]time.Time, len(shards))
	for i, shard := range shards {
		times[i] = clock.Now(shard)
	}

	// 1. The marker, due segments and queue sizes.
	due := make([]*redis.ZSliceCmd, len(shards))
	sizes := make([]*redis.IntCmd, len(shards))
	markerKeys, err := b.markerKeys(ctx)
	if err != nil {
		return nil, stats, err
	}
	var markers []*redis.StringCmd
	before := b.knownMarkers()
	if err := b.pipeline(ctx, func(p redis.Pipeliner) {
		markers = b.readMarkers(ctx, p, markerKeys)
		for i, shard := range shards {
			q := b.queueKey(shard)
			due[i] = p.ZRangeByScoreWithScores(ctx, q, &redis.ZRangeBy{
				Min: "-inf", Max: strconv.FormatInt(times[i].UnixMilli(), 10), Count: int64(limit),
			})
			sizes[i] = p.ZCard(ctx, q)
		}
	}); err != nil {
		return nil, stats, fmt.Errorf("store: reading flush queues: %w", err)
	}
	tokens, err := b.checkMarkers(ctx, before, markerKeys, markers)
	if err != nil {
		return nil, stats, err
	}
	segs := make(map[string]*FlushedSegment)
	var order []*FlushedSegment
	for i, shard := range shards {
		q := b.queueKey(shard)
		entries := due[i].Val()
		stats.Shards[i] = ShardStats{Shard: shard, QueueSize: sizes[i].Val(), Due: len(entries), AtLimit: len(entries) >= limit}
		if len(entries) > 0 {
			// Entries come in deadline order, so the first is the oldest.
			stats.Shards[i].Lag = max(0, times[i].Sub(time.UnixMilli(int64(entries[0].Score))))
		}
		confirmed := float64(clock.Now(shard).UnixMilli())
		for _, z := range entries {
			if z.Score > confirmed {
				continue
			}
			key, _ := z.Member.(string)
			seg, ok := segs[key]
			if !ok {
				pt, project, trace, root, valid := b.keys.parseSegment(key)
				if !valid {
					b.cfg.Logger.Warn("flush queue holds a malformed segment key; leaving it to expire", zap.String("queue", q), zap.String("key", key))
					continue
				}
				seg = &FlushedSegment{Key: key, QueueKey: q, ProjectID: project, TraceID: trace, RootID: root, pt: pt}
				segs[key] = seg
				order = append(order, seg)
			}
			seg.queues = append(seg.queues, queueEntry{q, z.Score})
		}
	}
	if len(order) == 0 {
		b.recordFlush(start, stats)
		return map[string]FlushedSegment{}, stats, nil
	}

	// 2. Locks, member keys and counters.
	type meta struct {
		lock    *redis.BoolCmd
		members *redis.StringSliceCmd
		counts  *redis.SliceCmd // spans and bytes ingested
	}
	metas := make([]meta, len(order))
	if err := b.pipeline(ctx, func(p redis.Pipeliner) {
		for i, seg := range order {
			seg.metaKeys = [3]string{b.keys.memberKeys(seg.pt, seg.RootID), b.keys.count(seg.Key), b.keys.bytes(seg.Key)}
			if b.cfg.FlushLockTTL > 0 {
				seg.lockToken = newToken()
				metas[i].lock = p.SetNX(ctx, b.keys.lock(seg.Key), seg.lockToken, b.cfg.FlushLockTTL)
			}
			metas[i].members = p.SMembers(ctx, seg.metaKeys[0])
			metas[i].counts = p.MGet(ctx, seg.metaKeys[1], seg.metaKeys[2])
		}
	}); err != nil {
		return nil, stats, fmt.Errorf("store: reading segments: %w", err)
	}
	var loading, empty []*FlushedSegment
	for i, seg := range order {
		m := metas[i]
		if m.lock != nil && !m.lock.Val() {
			stats.LockContention++
			delete(segs, seg.Key)
			continue
		}
		for _, member := range m.members.Val() {
			if strings.HasPrefix(member, skipPrefix) {
				seg.skip = append(seg.skip, member)
			} else {
				seg.salts = append(seg.salts, member)
			}
		}
		if counts := m.counts.Val(); len(counts) == 2 {
			seg.ingested, seg.bytes = counter(counts[0]), counter(counts[1])
		}
		if len(seg.salts) == 0 {
			empty = append(empty, seg)
			continue
		}
		loading = append(loading, seg)
	}

	// 3. Payload sets, page by page.
	if err := b.loadPayloads(ctx, loading, &stats); err != nil {
		return nil, stats, err
	}
	out := make(map[string]FlushedSegment, len(loading))
	for _, seg := range loading {
		if len(seg.Spans) == 0 {
			empty = append(empty, seg)
			continue
		}
		stats.Segments++
		stats.Spans += len(seg.Spans)
		out[seg.Key] = *seg
	}

	// What was loaded is only whole if Redis was not emptied meanwhile.
	if err := b.confirmMarkers(ctx, tokens); err != nil {
		return nil, stats, err
	}

	// Entries without data are removed now: there is nothing to produce.
	if len(empty) > 0 {
		stats.Expired += len(empty)
		if err := b.Done(ctx, toMap(empty)); err != nil {
			return nil, stats, err
		}
		for _, seg := range empty {
			stats.DroppedSalts = append(stats.DroppedSalts, seg.Salts()...)
		}
	}
	b.recordFlush(start, stats)
	return out, stats, nil
}

// counter reads a counter from an MGET reply: 0 when missing.
func counter(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func toMap(segs []*FlushedSegment) map[string]FlushedSegment {
	m := make(map[string]FlushedSegment, len(segs))
	for _, s := range segs {
		m[s.Key] = *s
	}
	return m
}

// loadPayloads reads every payload set of segs with SSCAN, all segments' pages in one
// pipeline per round, and fills in their output spans.
func (b *Buffer) loadPayloads(ctx context.Context, segs []*FlushedSegment, stats *FlushStats) error {
	type scan struct {
		seg    int // index in segs
		key    string
		cursor uint64
		cmd    *redis.ScanCmd
	}
	var scans []scan
	for i, seg := range segs {
		for _, salt := range seg.salts {
			scans = append(scans, scan{seg: i, key: b.keys.payload(seg.pt, salt)})
		}
	}
	members := make([][]string, len(segs))
	pending := make([]int, len(scans))
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		if err := b.pipeline(ctx, func(p redis.Pipeliner) {
			for _, i := range pending {
				s := &scans[i]
				s.cmd = p.SScan(ctx, s.key, s.cursor, "", int64(b.cfg.SegmentPageSize))
			}
		}); err != nil {
			return fmt.Errorf("store: loading payloads: %w", err)
		}
		next := pending[:0]
		for _, i := range pending {
			s := &scans[i]
			page, cursor := s.cmd.Val()
			if members[s.seg] == nil {
				members[s.seg] = page
			} else {
				members[s.seg] = append(members[s.seg], page...)
			}
			if cursor != 0 {
				s.cursor = cursor
				next = append(next, i)
			}
		}
		pending = next
	}

	var raws [][]byte
	for i, seg := range segs {
		raws = raws[:0]
		for _, member := range members[i] {
			var err error
			if raws, err = b.appendPayloads(raws, member); err != nil {
				b.cfg.Logger.Error("unreadable payload in segment; skipping it", zap.String("segment", seg.Key), zap.Error(err))
			}
		}
		b.outputSpans(seg, raws)
		if missing := seg.ingested - int64(len(raws)); missing > 0 {
			stats.Dropped += int(missing)
			b.cfg.Logger.Warn("segment lost spans: their payloads expired or were evicted before the flush",
				zap.String("segment", seg.Key), zap.Int64("ingested", seg.ingested), zap.Int64("loaded", int64(len(raws))))
		}
	}
	return nil
}

// outputSpans fills in seg's output spans from its payloads, all in one buffer. A
// span written twice (a batch retried with other boundaries) is emitted once.
func (b *Buffer) outputSpans(seg *FlushedSegment, raws [][]byte) {
	segAttr := segmentAttribute(seg.RootID)
	size := 0
	for _, raw := range raws {
		size += len(raw) + len(segAttr) + outputSpanExtra
	}
	buf := make([]byte, 0, size)
	seg.Spans = make([][]byte, 0, len(raws))
	seg.spanIDs = make([]string, 0, len(raws))
	var seen map[string]bool // only for large segments; small ones search spanIDs
	var skipped map[string]bool
	if len(seg.skip) > 0 {
		// Spans flushed already (add.lua marked them): their copies read again
		// here are left out.
		skipped = make(map[string]bool, len(seg.skip))
		for _, member := range seg.skip {
			skipped[member[len(skipPrefix):]] = true
		}
	}
	for _, raw := range raws {
		start := len(buf)
		out, id, err := appendOutputSpan(buf, raw, seg.RootID, segAttr)
		if err != nil {
			b.cfg.Logger.Error("payload in segment is not a JSON object; skipping it", zap.String("segment", seg.Key), zap.Error(err))
			continue
		}
		if id != "" {
			if skipped[id] {
				continue
			}
			if len(seg.spanIDs) == 32 && seen == nil {
				seen = make(map[string]bool, len(raws))
				for _, s := range seg.spanIDs {
					seen[s] = true
				}
			}
			if seen != nil && seen[id] || seen == nil && slices.Contains(seg.spanIDs, id) {
				continue
			}
			if seen != nil {
				seen[id] = true
			}
			seg.spanIDs = append(seg.spanIDs, id)
		}
		buf = out
		seg.Spans = append(seg.Spans, buf[start:len(buf):len(buf)])
	}
}

// Done removes flushed segments from Redis: call it only once every message of
// every segment was acknowledged by Kafka. It removes exactly what the
// flush loaded, so spans that arrived in between stay and are flushed later; the
// has-root flag stays until it expires, so that late spans of a flushed segment are
// flushed after RootTimeout. A crash before this call produces the segments again:
// duplicates, never loss.
//
// On a single Redis one script call removes up to doneChunk segments with their
// payload sets and queue entries. On a Cluster each segment's keys share a slot
// but its payload sets and queues do not: there each segment costs a script call,
// an UNLINK per payload set and the dequeue script per queue.
func (b *Buffer) Done(ctx context.Context, segs map[string]FlushedSegment) error {
	if len(segs) == 0 {
		return nil
	}
	err := b.pipeline(ctx, func(p redis.Pipeliner) {
		var keys []string
		var args []any
		n := 0
		flush := func() {
			if n > 0 {
				p.EvalSha(ctx, b.done.Hash(), keys, args...)
			}
			keys, args, n = nil, nil, 0
		}
		for _, seg := range segs {
			keys, args = b.appendDone(keys, args, &seg, !b.cluster)
			n++
			if b.cluster {
				flush()
				for _, s := range seg.salts {
					p.Unlink(ctx, b.keys.payload(seg.pt, s))
				}
				for _, q := range seg.queues {
					p.EvalSha(ctx, b.dequeue.Hash(), []string{q.key}, seg.Key, strconv.FormatFloat(q.deadline, 'f', -1, 64))
				}
				continue
			}
			if n >= doneChunk {
				flush()
			}
		}
		flush()
	})
	if err != nil {
		return fmt.Errorf("store: removing flushed segments: %w", err)
	}
	if b.cfg.RedeliveryWindow > 0 {
		b.flushed.add(segs, time.Now(), b.cfg.RedeliveryWindow)
	}
	return nil
}

// doneChunk is how many segments one call of the done script removes on a single
// Redis: enough to spread the cost of a script call, few enough that one call
// blocks Redis for a millisecond or two.
const doneChunk = 100

// appendDone appends seg's keys and arguments for the done script (done.lua),
// with its payload sets and queues when all is set.
func (b *Buffer) appendDone(keys []string, args []any, seg *FlushedSegment, all bool) ([]string, []any) {
	pt := seg.pt
	if seg.metaKeys[0] == "" { // not from Flush: build them
		seg.metaKeys = [3]string{b.keys.memberKeys(pt, seg.RootID), b.keys.count(seg.Key), b.keys.bytes(seg.Key)}
	}
	keys = append(keys, seg.metaKeys[0], seg.metaKeys[1], seg.metaKeys[2], b.keys.lock(seg.Key), b.keys.redirect(pt), b.keys.flushed(pt))
	payloads, queues := 0, 0
	if all {
		payloads, queues = len(seg.salts), len(seg.queues)
		for _, s := range seg.salts {
			keys = append(keys, b.keys.payload(pt, s))
		}
		for _, q := range seg.queues {
			keys = append(keys, q.key)
		}
	}
	args = append(args, seg.lockToken, seg.ingested, seg.bytes, seg.RootID, seg.Key, len(seg.salts)+len(seg.skip), len(seg.spanIDs), payloads, queues,
		max(b.cfg.RedeliveryWindow.Milliseconds(), 0))
	for _, s := range seg.salts {
		args = append(args, s)
	}
	for _, s := range seg.skip {
		args = append(args, s)
	}
	for _, id := range seg.spanIDs {
		args = append(args, id)
	}
	for _, q := range seg.queues[:queues] {
		args = append(args, strconv.FormatFloat(q.deadline, 'f', -1, 64))
	}
	return keys, args
}

func (b *Buffer) recordFlush(start time.Time, s FlushStats) {
	m := b.cfg.Metrics
	m.Timing("spans.buffer.flush_segments", time.Since(start))
	m.Increment("spans.buffer.flush_segments.segments", int64(s.Segments))
	m.Increment("spans.buffer.flush_segments.spans", int64(s.Spans))
	if s.Dropped > 0 {
		m.Increment("spans.buffer.dropped_spans", int64(s.Dropped))
	}
	if s.Expired > 0 {
		m.Increment("spans.buffer.expired_segments", int64(s.Expired))
	}
	if s.LockContention > 0 {
		m.Increment("spans.buffer.flush_lock_contention", int64(s.LockContention))
	}
}

func newToken() string {
	var t [16]byte
	_, _ = rand.Read(t[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(t[:])
}
