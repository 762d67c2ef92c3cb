package segments

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

var (
	//go:embed add.lua
	addSource string
	//go:embed done.lua
	doneSource string
	//go:embed dequeue.lua
	dequeueSource string
)

// Buffer is the span buffer's store in Redis: ProcessSpans adds spans to their
// segments, FlushShards takes the segments that went quiet, DoneFlushSegments removes
// them once they were produced. It works on a single Redis and on a Redis Cluster.
//
// A Buffer is safe for concurrent use: its own state is the shard set, guarded by a
// mutex, and the rest lives in Redis.
type Buffer struct {
	client  redis.UniversalClient
	cluster bool
	cfg     Config

	add, done, dequeue *redis.Script

	// encoder is nil when compression is off. decoder is built on first need, since
	// compressed payloads may be met even with compression off (after a config change).
	encoder     *zstd.Encoder
	decoderOnce sync.Once
	decoder     *zstd.Decoder
	decoderErr  error

	mu     sync.Mutex
	shards []int32

	// clusterIngest serialises the scripts and queue updates of concurrent batches
	// on a Cluster. There the queue update is a round trip of its own after the
	// scripts (the queues live in other slots), so two batches interleaving could
	// queue a segment that the other batch's script had just merged away and drop
	// the live one. On a single Redis the script updates the queues atomically.
	clusterIngest sync.Mutex
}

// NewBuffer returns a Buffer on client with cfg, after filling in cfg's defaults and
// validating it. It does not talk to Redis: the Lua scripts are loaded on first use,
// and again whenever Redis has forgotten them.
func NewBuffer(client redis.UniversalClient, cfg Config) (*Buffer, error) {
	if client == nil {
		return nil, errors.New("segments: NewBuffer needs a Redis client")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	_, cluster := client.(*redis.ClusterClient)
	b := &Buffer{
		client:  client,
		cluster: cluster,
		cfg:     cfg,
		add:     redis.NewScript(addSource),
		done:    redis.NewScript(doneSource),
		dequeue: redis.NewScript(dequeueSource),
	}
	if cfg.CompressionLevel > 0 {
		b.encoder, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(cfg.CompressionLevel)))
		if err != nil {
			return nil, fmt.Errorf("segments: zstd encoder: %w", err)
		}
	}
	return b, nil
}

func (b *Buffer) loadScripts(ctx context.Context) error {
	for _, s := range []*redis.Script{b.add, b.done, b.dequeue} {
		if err := s.Load(ctx, b.client).Err(); err != nil {
			return fmt.Errorf("segments: loading Lua script into Redis: %w", err)
		}
	}
	return nil
}

// SetShards sets the shards (Kafka partitions) whose queues FlushSegments flushes,
// as after a rebalance. Ingest is not affected: a span always goes to the queue of
// the partition it was read from.
func (b *Buffer) SetShards(shards []int32) {
	s := slices.Clone(shards)
	slices.Sort(s)
	b.mu.Lock()
	b.shards = slices.Compact(s)
	b.mu.Unlock()
}

// Shards returns the shards set by SetShards.
func (b *Buffer) Shards() []int32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.shards)
}

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
		ids := tr.ids
		pt := traceTag(tr.key.project, tr.key.trace)
		bySub := make(map[string]*subsegment)
		for _, s := range tr.order {
			top, hasRoot := s.effectiveParent(), s.IsRoot()
			// A cycle of parents within the batch ends after len(ids) hops.
			for hops := 0; !hasRoot && hops < len(ids); hops++ {
				p, ok := ids[top]
				if !ok {
					break
				}
				top, hasRoot = p.effectiveParent(), p.IsRoot()
			}
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

// ProcessSpans adds a batch of spans to their segments. now is the batch's Kafka time
// (its smallest message timestamp), not the wall clock, so that a consumer working
// through a backlog does not flush segments early. Nothing is dropped: a subsegment
// that does not fit its segment, or whose segment is being flushed, becomes a segment
// of its own.
//
// On a single Redis a batch costs one round trip; on a Cluster, three (payloads, then
// the script per subsegment, then the queues), so that a payload set always exists
// before its segment points at it.
func (b *Buffer) ProcessSpans(ctx context.Context, spans []Span, now time.Time) error {
	return b.processSpans(ctx, spans, func(int32) time.Time { return now })
}

// ProcessSpansAt is ProcessSpans with a Kafka time per shard (partition): a span's
// segment gets its deadline from the time of the partition the span was read from,
// since partitions are consumed at different rates. Every span's partition must be
// in now.
func (b *Buffer) ProcessSpansAt(ctx context.Context, spans []Span, now map[int32]time.Time) error {
	for i := range spans {
		if _, ok := now[spans[i].Partition]; !ok {
			return fmt.Errorf("segments: ProcessSpansAt has no time for shard %d of span %s; give one for every partition in the batch", spans[i].Partition, spans[i].SpanID)
		}
	}
	return b.processSpans(ctx, spans, func(shard int32) time.Time { return now[shard] })
}

func (b *Buffer) processSpans(ctx context.Context, spans []Span, now func(shard int32) time.Time) error {
	if len(spans) == 0 {
		return nil
	}
	start := time.Now()
	subs := group(spans)
	b.preparePayloads(subs)

	ttl := b.cfg.TTL
	writePayloads := func(p redis.Pipeliner) {
		for _, sub := range subs {
			key := payloadKey(sub.pt, sub.salt)
			p.SAdd(ctx, key, sub.payloads...)
			p.Expire(ctx, key, ttl)
		}
	}
	var addCmds []*redis.Cmd
	runScripts := func(p redis.Pipeliner) {
		addCmds = addCmds[:0]
		for _, sub := range subs {
			addCmds = append(addCmds, b.addScriptCmd(ctx, p, sub, now))
		}
	}

	if b.cluster {
		if err := b.pipeline(ctx, writePayloads); err != nil {
			return fmt.Errorf("segments: writing payloads: %w", err)
		}
		b.clusterIngest.Lock()
		defer b.clusterIngest.Unlock()
		if err := b.pipeline(ctx, runScripts); err != nil {
			return fmt.Errorf("segments: adding subsegments: %w", err)
		}
	} else if err := b.pipeline(ctx, func(p redis.Pipeliner) { writePayloads(p); runScripts(p) }); err != nil {
		return fmt.Errorf("segments: adding spans: %w", err)
	}

	detached := 0
	results := make([]addResult, len(subs))
	for i, cmd := range addCmds {
		r, err := parseAddResult(cmd)
		if err != nil {
			return err
		}
		results[i] = r
		if r.detached {
			detached++
		}
	}
	if b.cluster {
		if err := b.pipeline(ctx, func(p redis.Pipeliner) { b.updateQueues(ctx, p, subs, results, now) }); err != nil {
			return fmt.Errorf("segments: updating flush queues: %w", err)
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
	return nil
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

func (b *Buffer) addScriptCmd(ctx context.Context, p redis.Pipeliner, sub *subsegment, now func(int32) time.Time) *redis.Cmd {
	keys := []string{redirectKey(sub.pt)}
	if !b.cluster {
		for _, shard := range sub.shards {
			keys = append(keys, b.queueKey(shard))
		}
	}
	hasRoot := "0"
	if sub.hasRoot {
		hasRoot = "1"
	}
	args := make([]any, 0, 10+len(sub.spans)+len(keys)-1)
	args = append(args, sub.pt, sub.top, hasRoot, sub.salt, len(sub.spans), sub.bytes,
		int64(b.cfg.TTL/time.Second), b.cfg.MaxSegmentBytes,
		b.cfg.RootTimeout.Milliseconds(), b.cfg.Timeout.Milliseconds())
	for _, s := range sub.spans {
		args = append(args, s.SpanID)
	}
	if !b.cluster {
		for _, shard := range sub.shards {
			args = append(args, now(shard).UnixMilli())
		}
	}
	return p.EvalSha(ctx, b.add.Hash(), keys, args...)
}

type addResult struct {
	segment  string
	hasRoot  bool
	detached bool
	merged   []string
}

func parseAddResult(cmd *redis.Cmd) (addResult, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return addResult{}, fmt.Errorf("segments: add script: %w", err)
	}
	if len(vals) < 3 {
		return addResult{}, fmt.Errorf("segments: add script returned %d values, want at least 3", len(vals))
	}
	var r addResult
	var ok bool
	if r.segment, ok = vals[0].(string); !ok {
		return addResult{}, fmt.Errorf("segments: add script returned segment key %v (%T), want a string", vals[0], vals[0])
	}
	r.hasRoot = vals[1] == int64(1)
	r.detached = vals[2] == int64(1)
	for _, v := range vals[3:] {
		if s, ok := v.(string); ok {
			r.merged = append(r.merged, s)
		}
	}
	return r, nil
}

// updateQueues does on a Cluster what the add script does on a single Redis: move
// each segment's deadline and drop the children it absorbed.
func (b *Buffer) updateQueues(ctx context.Context, p redis.Pipeliner, subs []*subsegment, results []addResult, now func(int32) time.Time) {
	for i, sub := range subs {
		r := results[i]
		quiet := b.cfg.Timeout
		if r.hasRoot {
			quiet = b.cfg.RootTimeout
		}
		for _, shard := range sub.shards {
			q := b.queueKey(shard)
			deadline := now(shard).Add(quiet)
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
func (b *Buffer) pipeline(ctx context.Context, fill func(redis.Pipeliner)) error {
	for attempt := 0; ; attempt++ {
		cmds, _ := b.client.Pipelined(ctx, func(p redis.Pipeliner) error { fill(p); return nil })
		var first error
		noScript := false
		for _, c := range cmds {
			err := c.Err()
			if err == nil || errors.Is(err, redis.Nil) {
				continue
			}
			if redis.HasErrorPrefix(err, "NOSCRIPT") {
				noScript = true
			} else if first == nil {
				first = err
			}
		}
		if first != nil {
			return first
		}
		if !noScript {
			return nil
		}
		if attempt > 0 {
			return errors.New("segments: Redis keeps answering NOSCRIPT after the scripts were loaded")
		}
		if err := b.loadScripts(ctx); err != nil {
			return err
		}
	}
}
