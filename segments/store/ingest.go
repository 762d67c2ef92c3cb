package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// subsegment is a group of spans of one batch that certainly share a segment: they
// are linked through in-batch parents up to top.
type subsegment struct {
	pt       string
	top      string
	hasRoot  bool
	spans    []*Span
	bytes    int
	shards   []int32
	salt     string
	payloads []any
}

// group splits a batch into subsegments, following in-batch parent links. Spans of
// one trace that repeat a span id are kept once.
func group(spans []Span) []*subsegment {
	type traceKey struct {
		project uint64
		trace   string
	}
	// trace holds one trace's spans of the batch: by id, and in batch order with
	// repeated ids left out.
	type trace struct {
		key   traceKey
		ids   map[string]*Span
		order []*Span
	}
	byTrace := make(map[traceKey]*trace)
	var traces []*trace
	for i := range spans {
		s := &spans[i]
		k := traceKey{s.ProjectID, s.TraceID}
		tr, ok := byTrace[k]
		if !ok {
			tr = &trace{key: k, ids: make(map[string]*Span)}
			byTrace[k] = tr
			traces = append(traces, tr)
		}
		if _, dup := tr.ids[s.SpanID]; !dup {
			tr.ids[s.SpanID] = s
			tr.order = append(tr.order, s)
		}
	}

	var out []*subsegment
	for _, tr := range traces {
		pt := traceTag(tr.key.project, tr.key.trace)
		tops := resolveTops(tr.order, tr.ids)
		bySub := make(map[string]*subsegment)
		for i, s := range tr.order {
			top, hasRoot := tops[i].top, tops[i].hasRoot
			sub, ok := bySub[top]
			if !ok {
				sub = &subsegment{pt: pt, top: top}
				bySub[top] = sub
				out = append(out, sub)
			}
			sub.hasRoot = sub.hasRoot || hasRoot
			sub.spans = append(sub.spans, s)
			sub.bytes += len(s.Payload)
			if !slices.Contains(sub.shards, s.Partition) {
				sub.shards = append(sub.shards, s.Partition)
			}
		}
	}
	for _, sub := range out {
		sub.salt = saltOf(sub.spans)
	}
	return out
}

type resolvedTop struct {
	top     string
	hasRoot bool
}

// resolveTops returns, for each span of one trace's batch (ids: those spans by id),
// where the walk up its in-batch parents ends: the first root met, or the first
// parent not in the batch. A span that reaches a cycle of parents walks len(ids)
// hops and stops wherever that leaves it, as the walk always has.
//
// Every span is resolved from its parent's result, each once, so a long chain costs
// linear time rather than a walk per span (quadratic).
func resolveTops(order []*Span, ids map[string]*Span) []resolvedTop {
	n := len(order)
	index := make(map[*Span]int, n)
	for i, s := range order {
		index[s] = i
	}
	// next[i] is the span the walk from span i goes to, -1 where it ends; there the
	// result is known at once.
	next := make([]int, n)
	res := make([]resolvedTop, n)
	for i, s := range order {
		next[i] = -1
		switch p, ok := ids[s.effectiveParent()]; {
		case s.IsRoot():
			res[i] = resolvedTop{s.SpanID, true}
		case !ok:
			res[i] = resolvedTop{s.effectiveParent(), false}
		default:
			next[i] = index[p]
		}
	}

	// A span that leads into a cycle is described by the cycle (its spans in walk
	// order), its distance from the cycle and the position on it where it enters.
	const (
		unvisited = iota
		onPath
		resolved
	)
	state := make([]uint8, n)
	var cycles [][]int
	cycleOf, entry, dist := make([]int, n), make([]int, n), make([]int, n)
	for i := range cycleOf {
		cycleOf[i] = -1
	}
	var path []int
	for i := range order {
		if state[i] != unvisited {
			continue
		}
		path = path[:0]
		j := i
		for next[j] >= 0 && state[j] == unvisited {
			state[j] = onPath
			path = append(path, j)
			j = next[j]
		}
		switch {
		case state[j] == onPath: // the path closed a cycle at j
			start := slices.Index(path, j)
			cycle := slices.Clone(path[start:])
			for pos, k := range cycle {
				cycleOf[k], entry[k], dist[k], state[k] = len(cycles), pos, 0, resolved
			}
			cycles = append(cycles, cycle)
			path = path[:start]
		case next[j] < 0: // a span whose walk ends at once
			state[j] = resolved
		}
		// j is resolved now; the path leads into it.
		for k := len(path) - 1; k >= 0; k-- {
			p, q := path[k], next[path[k]]
			res[p], cycleOf[p], entry[p], dist[p], state[p] = res[q], cycleOf[q], entry[q], dist[q]+1, resolved
		}
	}

	// The walk from span i starts at its parent, next(i), so its top after len(ids)
	// hops is the span n+1 steps along next from i: dist[i] steps reach the cycle,
	// the rest go round it.
	for i := range order {
		if c := cycleOf[i]; c >= 0 {
			cycle := cycles[c]
			res[i] = resolvedTop{order[cycle[(entry[i]+n+1-dist[i])%len(cycle)]].SpanID, false}
		}
	}
	return res
}

// saltOf hashes the span ids, so that a retried batch writes to the same keys.
func saltOf(spans []*Span) string {
	ids := make([]string, len(spans))
	for i, s := range spans {
		ids[i] = s.SpanID
	}
	slices.Sort(ids)
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:8])
}

// IngestStats says what one Ingest did beyond adding spans to their segments.
type IngestStats struct {
	// Redelivered counts the spans left out because the buffer flushed them within
	// Config.RedeliveryWindow: copies read again from Kafka.
	Redelivered int
	// DroppedSalts are the payload sets, in the form BatchSalts gives, that were
	// added to no segment because every span in them was flushed already: no flush
	// will report them.
	DroppedSalts []string
}

// Ingest adds a batch of spans to their segments. clock gives each shard's time:
// the Kafka time of the batch's spans read from that partition (their smallest
// timestamp), not the wall clock, so that a consumer working through a backlog does
// not flush segments early, and a lagging partition is not given a leading one's
// time. Nothing is dropped but copies of spans flushed within RedeliveryWindow
// (IngestStats): a subsegment that does not fit its segment, or whose segment is
// being flushed, becomes a segment of its own.
//
// On a single Redis a batch costs one round trip; on a Cluster, three (payloads, then
// the script per subsegment, then the queues), so that a payload set always exists
// before its segment points at it; one more removes the payload sets of
// subsegments that were flushed already. Ingest is idempotent: a batch that failed
// part way may be ingested again.
func (b *Buffer) Ingest(ctx context.Context, spans []Span, clock Clock) (IngestStats, error) {
	var stats IngestStats
	if len(spans) == 0 {
		return stats, nil
	}
	start := time.Now()
	subs := group(spans)
	b.preparePayloads(subs)

	ttl := b.cfg.TTL
	writePayloads := func(p redis.Pipeliner) {
		for _, sub := range subs {
			key := b.keys.payload(sub.pt, sub.salt)
			p.SAdd(ctx, key, sub.payloads...)
			p.Expire(ctx, key, ttl)
		}
	}
	var addCmds []*redis.Cmd
	runScripts := func(p redis.Pipeliner) {
		addCmds = addCmds[:0]
		for _, sub := range subs {
			addCmds = append(addCmds, b.addScriptCmd(ctx, p, sub, clock))
		}
	}

	if b.cluster {
		if err := b.pipeline(ctx, writePayloads); err != nil {
			return stats, fmt.Errorf("store: writing payloads: %w", err)
		}
		b.clusterIngest.Lock()
		defer b.clusterIngest.Unlock()
		if err := b.pipeline(ctx, runScripts); err != nil {
			return stats, fmt.Errorf("store: adding subsegments: %w", err)
		}
	} else if err := b.pipeline(ctx, func(p redis.Pipeliner) { writePayloads(p); runScripts(p) }); err != nil {
		return stats, fmt.Errorf("store: adding spans: %w", err)
	}

	detached := 0
	var orphans []string
	results := make([]addResult, len(subs))
	for i, cmd := range addCmds {
		r, err := parseAddResult(cmd)
		if err != nil {
			return stats, err
		}
		results[i] = r
		if r.detached {
			detached++
		}
		stats.Redelivered += r.flushed
		if r.dropped {
			sub := subs[i]
			stats.DroppedSalts = append(stats.DroppedSalts, saltKey(sub.pt, sub.salt))
			orphans = append(orphans, b.keys.payload(sub.pt, sub.salt))
		}
	}
	if b.cluster {
		if err := b.pipeline(ctx, func(p redis.Pipeliner) { b.updateQueues(ctx, p, subs, results, clock) }); err != nil {
			return stats, fmt.Errorf("store: updating flush queues: %w", err)
		}
	}
	if len(orphans) > 0 {
		// No segment points at these sets; they were written before the scripts
		// found their spans flushed.
		if err := b.pipeline(ctx, func(p redis.Pipeliner) {
			for _, k := range orphans {
				p.Unlink(ctx, k)
			}
		}); err != nil {
			return stats, fmt.Errorf("store: removing the payloads of spans flushed already: %w", err)
		}
	}

	m := b.cfg.Metrics
	m.Timing("spans.buffer.process_spans", time.Since(start))
	m.Increment("spans.buffer.process_spans.count", int64(len(spans)))
	m.Increment("spans.buffer.process_spans.subsegments", int64(len(subs)))
	if detached > 0 {
		m.Increment("spans.buffer.process_spans.detached", int64(detached))
		b.cfg.Logger.Debug("subsegments detached from full or locked segments", zap.Int("count", detached))
	}
	if stats.Redelivered > 0 {
		m.Increment("spans.buffer.process_spans.redelivered", int64(stats.Redelivered))
		b.cfg.Logger.Debug("spans read again after their segment was flushed left out",
			zap.Int("spans", stats.Redelivered), zap.Int("subsegments_dropped", len(orphans)))
	}
	return stats, nil
}

// preparePayloads fills in each subsegment's set members: the raw payloads, or one
// zstd frame holding them all.
func (b *Buffer) preparePayloads(subs []*subsegment) {
	for _, sub := range subs {
		if b.encoder == nil {
			sub.payloads = make([]any, len(sub.spans))
			for i, s := range sub.spans {
				sub.payloads[i] = s.Payload
			}
			continue
		}
		raw := make([][]byte, len(sub.spans))
		for i, s := range sub.spans {
			raw[i] = s.Payload
		}
		sub.payloads = []any{b.encoder.EncodeAll(frame(raw), nil)}
	}
}

func (b *Buffer) addScriptCmd(ctx context.Context, p redis.Pipeliner, sub *subsegment, clock Clock) *redis.Cmd {
	keys := []string{b.keys.redirect(sub.pt)}
	if !b.cluster {
		for _, shard := range sub.shards {
			keys = append(keys, b.queueKey(shard))
		}
	}
	hasRoot := "0"
	if sub.hasRoot {
		hasRoot = "1"
	}
	checkFlushed := "0"
	if b.cfg.RedeliveryWindow > 0 {
		checkFlushed = "1"
	}
	args := make([]any, 0, 11+len(sub.spans)+len(keys)-1)
	args = append(args, sub.pt, sub.top, hasRoot, sub.salt, len(sub.spans), sub.bytes,
		int64(b.cfg.TTL/time.Second), b.cfg.MaxSegmentBytes,
		b.cfg.RootTimeout.Milliseconds(), b.cfg.Timeout.Milliseconds(), checkFlushed)
	for _, s := range sub.spans {
		args = append(args, s.SpanID)
	}
	if !b.cluster {
		for _, shard := range sub.shards {
			args = append(args, clock.Now(shard).UnixMilli())
		}
	}
	return p.EvalSha(ctx, b.add.Hash(), keys, args...)
}

type addResult struct {
	segment  string // "" when dropped
	hasRoot  bool
	detached bool
	// flushed counts the subsegment's spans flushed already; dropped says that was
	// all of them, and the script wrote nothing.
	flushed int
	dropped bool
	merged  []string
}

func parseAddResult(cmd *redis.Cmd) (addResult, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return addResult{}, fmt.Errorf("store: add script: %w", err)
	}
	if len(vals) < 5 {
		return addResult{}, fmt.Errorf("store: add script returned %d values, want at least 5", len(vals))
	}
	var r addResult
	var ok bool
	if r.segment, ok = vals[0].(string); !ok {
		return addResult{}, fmt.Errorf("store: add script returned segment key %v (%T), want a string", vals[0], vals[0])
	}
	r.hasRoot = vals[1] == int64(1)
	r.detached = vals[2] == int64(1)
	n, _ := vals[3].(int64)
	r.flushed = int(n)
	r.dropped = vals[4] == int64(1)
	for _, v := range vals[5:] {
		if s, ok := v.(string); ok {
			r.merged = append(r.merged, s)
		}
	}
	return r, nil
}

// updateQueues does on a Cluster what the add script does on a single Redis: move
// each segment's deadline and drop the children it absorbed.
func (b *Buffer) updateQueues(ctx context.Context, p redis.Pipeliner, subs []*subsegment, results []addResult, clock Clock) {
	for i, sub := range subs {
		r := results[i]
		if r.dropped {
			continue
		}
		quiet := b.cfg.Timeout
		if r.hasRoot {
			quiet = b.cfg.RootTimeout
		}
		for _, shard := range sub.shards {
			q := b.queueKey(shard)
			deadline := clock.Now(shard).Add(quiet)
			p.ZAdd(ctx, q, redis.Z{Score: float64(deadline.UnixMilli()), Member: r.segment})
			if len(r.merged) > 0 {
				merged := make([]any, len(r.merged))
				for j, m := range r.merged {
					merged[j] = m
				}
				p.ZRem(ctx, q, merged...)
			}
			p.Expire(ctx, q, b.cfg.TTL)
		}
	}
}

// pipeline runs what fill queues in one pipeline and returns the first error of its
// commands. If Redis has forgotten the scripts (restart, failover, SCRIPT FLUSH), it
// loads them and runs the whole pipeline once more; every pipeline given here is
// idempotent.
