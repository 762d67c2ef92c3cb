package segments

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
)

// errProduceTimeout marks a cycle whose produce was not acknowledged in time.
var errProduceTimeout = errors.New("segments: produce not acknowledged within ProduceTimeout")

// worker is one flusher goroutine. Its own goroutine writes healthy, atLimit, lag and
// exitErr; others read them (exitErr only after done is closed).
type worker struct {
	f       *flusher
	index   int
	ctx     context.Context
	cancel  context.CancelFunc
	started time.Time

	assigned atomic.Pointer[[]int32]
	// healthy is when the last cycle completed (Unix ns); 0 before the first.
	healthy atomic.Int64
	// atLimit is since when every cycle has hit the per-shard limit (Unix ns); 0
	// while the worker keeps up.
	atLimit atomic.Int64
	// lag is the largest ShardStats.Lag of the last cycle that read the queues (ns).
	lag atomic.Int64

	reportOnce sync.Once
	reported   chan struct{} // closed on the first healthy report
	done       chan struct{} // closed when the goroutine has exited
	exitErr    error
}

// startWorker starts worker index on shards. f.mu is held.
func (f *flusher) startWorker(index int, shards []int32) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{
		f: f, index: index, ctx: ctx, cancel: cancel, started: time.Now(),
		reported: make(chan struct{}), done: make(chan struct{}),
	}
	w.setShards(shards)
	go w.run()
	return w
}

func (w *worker) setShards(s []int32) {
	s = slices.Clone(s)
	w.assigned.Store(&s)
}

func (w *worker) shards() []int32 { return *w.assigned.Load() }

func (w *worker) healthySince() time.Time {
	if ns := w.healthy.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// lagging returns how far behind its deadlines the worker's last flush was.
func (w *worker) lagging() time.Duration { return time.Duration(w.lag.Load()) }

// atLimitFor returns how long the worker has been at its per-cycle limit.
func (w *worker) atLimitFor(now time.Time) time.Duration {
	if ns := w.atLimit.Load(); ns != 0 {
		return now.Sub(time.Unix(0, ns))
	}
	return 0
}

// exitCause says why the worker's goroutine ended; call it after done is closed.
func (w *worker) exitCause() string {
	if w.exitErr != nil {
		return w.exitErr.Error()
	}
	return "returned"
}

func (w *worker) report() {
	w.healthy.Store(time.Now().UnixNano())
	w.reportOnce.Do(func() { close(w.reported) })
}

func (w *worker) run() {
	log := w.f.log.With(zap.Int("worker", w.index))
	log.Info("span flusher worker started", zap.Int32s("shards", w.shards()))
	defer func() {
		if r := recover(); r != nil {
			buf := make([]byte, 16<<10)
			buf = buf[:runtime.Stack(buf, false)]
			w.exitErr = fmt.Errorf("panic: %v", r)
			log.Error("span flusher worker panicked", zap.Any("panic", r), zap.ByteString("stack", buf))
		}
		log.Info("span flusher worker exited", zap.Int32s("shards", w.shards()))
		close(w.done)
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-t.C:
		}
		more, err := w.cycle()
		switch {
		case err == nil:
			w.report()
		case w.ctx.Err() != nil:
			return
		default:
			log.Warn("span flusher cycle failed; retrying", zap.Error(err))
		}
		if more {
			t.Reset(0)
		} else {
			t.Reset(w.f.cfg.IdleInterval)
		}
	}
}

// cycle flushes the worker's shards once. more reports that a shard hit the
// per-shard limit, so more segments may be due now.
func (w *worker) cycle() (more bool, err error) {
	f := w.f
	shards := f.claim(w.shards())
	defer f.release(shards)
	if len(shards) == 0 {
		w.atLimit.Store(0)
		w.lag.Store(0)
		return false, nil
	}

	f.mu.Lock()
	assigned := f.assigned
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(w.ctx, f.cfg.RedisTimeout)
	segs, stats, err := f.buf.Flush(ctx, shards, assigned, f.clock)
	cancel()
	if errors.Is(err, store.ErrRedisLost) {
		// Retrying would not bring the spans back: the chain must read them again.
		f.fail(fmt.Errorf("segments: flusher worker %d: %w", w.index, err))
		return false, err
	}
	if err != nil {
		f.m.count("spans.buffer.flusher.errors", 1, metrics.Tag{Key: "step", Value: "flush"})
		return false, err
	}
	if f.tracker != nil {
		f.tracker.cover(stats.DroppedSalts)
	}
	var lag time.Duration
	for _, s := range stats.Shards {
		more = more || s.AtLimit
		lag = max(lag, s.Lag)
		f.m.gauge("spans.buffer.flusher.queue_size", float64(s.QueueSize), shardTag(s.Shard))
		f.m.gauge("spans.buffer.flusher.lag", s.Lag.Seconds(), shardTag(s.Shard))
	}
	w.lag.Store(int64(lag))
	if more {
		w.atLimit.CompareAndSwap(0, time.Now().UnixNano())
	} else {
		w.atLimit.Store(0)
	}
	if len(segs) == 0 {
		return more, nil
	}

	acked, err := w.produce(segs)
	if len(acked) > 0 {
		// Not cancelled when the worker is stopped, only bounded: Kafka has the
		// segments, and left in Redis they would be flushed again by the next owner
		// of the shard after every stop and rebalance that fell in between. Half of
		// StopTimeout at most, so that a worker being stopped still exits before its
		// stop is escalated.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), min(f.cfg.RedisTimeout, f.cfg.StopTimeout/2))
		doneErr := f.buf.Done(ctx, acked)
		cancel()
		if doneErr != nil {
			f.m.count("spans.buffer.flusher.errors", 1, metrics.Tag{Key: "step", Value: "done"})
			err = errors.Join(err, doneErr)
		}
		// Only after Done, whatever it did (see commitTracker): the segments were
		// produced and acknowledged, and what Done removed is removed.
		if f.tracker != nil {
			var salts []string
			for _, seg := range acked {
				salts = append(salts, seg.Salts()...)
			}
			f.tracker.cover(salts)
		}
	}
	if err == nil && !more && len(acked) == len(segs) {
		// Everything due when the queues were read is out: the flush has caught up.
		w.lag.Store(0)
	}
	return more, err
}

// produce writes every segment and waits, within ProduceTimeout, for the
// acknowledgements. It returns the segments all of whose messages were
// acknowledged; the others stay in Redis and are flushed again later.
func (w *worker) produce(segs map[string]store.FlushedSegment) (map[string]store.FlushedSegment, error) {
	f := w.f
	start := time.Now()
	ctx, cancel := context.WithTimeout(w.ctx, f.cfg.ProduceTimeout)
	defer cancel()

	type pending struct {
		seg        store.FlushedSegment
		deliveries []*processor.Delivery
	}
	all := make([]pending, 0, len(segs))
	for _, seg := range segs {
		msgs, err := f.buf.Messages(seg)
		if err != nil {
			f.log.Error("span flusher cannot render a segment; leaving it in Redis", zap.String("segment", seg.Key), zap.Error(err))
			continue
		}
		p := pending{seg: seg}
		headers := f.headers(seg)
		for _, m := range msgs {
			p.deliveries = append(p.deliveries, f.cfg.Producer.Produce(ctx, f.cfg.Topic, processor.KafkaPayload{Value: m, Headers: headers}))
		}
		all = append(all, p)
	}

	acked := make(map[string]store.FlushedSegment, len(all))
	var failed int
	var firstErr error
	for _, p := range all {
		var segErr error
		for _, d := range p.deliveries {
			if _, err := d.Wait(ctx); err != nil {
				segErr = err
				break
			}
		}
		if segErr != nil {
			failed++
			if firstErr == nil {
				firstErr = segErr
			}
			continue
		}
		acked[p.seg.Key] = p.seg
		bytes := 0
		for _, s := range p.seg.Spans {
			bytes += len(s)
		}
		f.m.count("spans.buffer.flusher.segment_spans", int64(len(p.seg.Spans)))
		f.m.count("spans.buffer.flusher.segment_bytes", int64(bytes))
	}
	f.m.timing("spans.buffer.flusher.produce", time.Since(start))
	f.m.count("spans.buffer.flusher.produced_segments", int64(len(acked)))
	if failed == 0 {
		return acked, nil
	}
	f.m.count("spans.buffer.flusher.produce_errors", int64(failed))
	if ctx.Err() != nil && w.ctx.Err() == nil {
		firstErr = fmt.Errorf("%w (%d of %d segments): %w", errProduceTimeout, failed, len(all), firstErr)
	} else {
		firstErr = fmt.Errorf("segments: producing %d of %d segments failed; they stay in Redis: %w", failed, len(all), firstErr)
	}
	return acked, firstErr
}

// headers returns the headers of seg's messages: its root span's traceparent
// unless OmitTraceParent is set. The messages of one segment share the slice.
func (f *flusher) headers(seg store.FlushedSegment) []processor.Header {
	if f.cfg.OmitTraceParent {
		return nil
	}
	tp, ok := seg.TraceParent()
	if !ok {
		return nil
	}
	return []processor.Header{{Key: HeaderTraceParent, Value: []byte(tp)}}
}

// claim marks as busy those of shards no other worker is flushing, and returns them.
func (f *flusher) claim(shards []int32) []int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int32, 0, len(shards))
	for _, s := range shards {
		if !f.busy[s] {
			f.busy[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (f *flusher) release(shards []int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range shards {
		delete(f.busy, s)
	}
}
