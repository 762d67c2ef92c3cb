package segments

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"time"

	"go.uber.org/zap"
)

// supervise checks the workers' health and Redis's memory every CheckInterval
// until ctx ends or the flusher fails.
func (f *flusher) supervise(ctx context.Context) {
	defer close(f.superDone)
	t := time.NewTicker(f.cfg.CheckInterval)
	defer t.Stop()
	memoryKnown := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if f.cfg.MaxMemoryRatio < 1 && memoryKnown {
			memoryKnown = f.checkMemory(ctx)
		}
		f.reap()
		f.mu.Lock()
		n := len(f.workers)
		f.mu.Unlock()
		for i := range n {
			if err := f.check(ctx, i); err != nil {
				f.log.Error("span flusher failed", zap.Error(err))
				f.fail(err)
				return
			}
		}
	}
}

// checkMemory measures Redis's memory ratio for Submit. It returns false when Redis
// does not report its memory, after which the check is off.
func (f *flusher) checkMemory(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.RedisTimeout)
	defer cancel()
	ratio, err := f.buf.MemoryRatio(ctx)
	switch {
	case errors.Is(err, ErrMemoryInfoUnavailable):
		f.log.Warn("Redis does not report its memory; MaxMemoryRatio backpressure is off", zap.Error(err))
		return false
	case err != nil:
		f.log.Warn("reading Redis memory failed; keeping the last value", zap.Error(err))
		return true
	}
	f.memRatio.Store(math.Float64bits(ratio))
	f.gauge("spans.buffer.flusher.memory_ratio", ratio)
	return true
}

// reap forgets retired workers that have exited.
func (f *flusher) reap() {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.retired[:0]
	for _, w := range f.retired {
		select {
		case <-w.done:
		default:
			kept = append(kept, w)
		}
	}
	clear(f.retired[len(kept):])
	f.retired = kept
}

// health returns why w must be replaced, or "" while it is healthy. A worker that
// has never reported is given StartupTimeout from its start.
func (f *flusher) health(w *worker, now time.Time) string {
	select {
	case <-w.done:
		if w.exitErr != nil {
			return "panic"
		}
		return "exited"
	default:
	}
	last := w.healthySince()
	if last.IsZero() {
		if now.Sub(w.started) > f.cfg.StartupTimeout {
			return "no_report"
		}
		return ""
	}
	if now.Sub(last) > f.cfg.MaxUnhealthy {
		return "stalled"
	}
	return ""
}

// check replaces worker i if it is unhealthy. The old worker is taken out of the
// flusher, stopped and waited for before its successor starts, so that the two
// never flush at once. It returns an error when the worker must not be replaced
// again or does not stop.
func (f *flusher) check(ctx context.Context, i int) error {
	f.mu.Lock()
	if i >= len(f.workers) || f.workers[i] == nil || f.stopping {
		f.mu.Unlock()
		return nil
	}
	w := f.workers[i]
	cause := f.health(w, time.Now())
	if cause == "" {
		f.mu.Unlock()
		return nil
	}
	shards := w.shards()
	f.workers[i] = nil
	f.retired = append(f.retired, w)
	restarts := f.restarts[i]
	f.mu.Unlock()

	for _, s := range shards {
		f.count("spans.buffer.flusher.unhealthy", 1, causeTag(cause), shardTag(s))
	}
	f.log.Warn("span flusher worker is unhealthy; replacing it",
		zap.Int("worker", i), zap.Int32s("shards", shards), zap.String("cause", cause),
		zap.Time("healthy_since", w.healthySince()), zap.Int("restarts", restarts))
	w.cancel()
	if err := f.awaitStop(ctx, w); err != nil || ctx.Err() != nil {
		return err
	}
	if restarts >= f.cfg.MaxRestarts {
		return &WorkerError{Worker: i, Shards: shards,
			Err: fmt.Errorf("%w: replaced %d times (MaxRestarts %d), now %s", ErrRestartLimit, restarts, f.cfg.MaxRestarts, cause)}
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping || i >= len(f.workers) || f.workers[i] != nil {
		return nil
	}
	f.restarts[i] = restarts + 1
	// The shards may have been dealt anew while the old worker stopped.
	f.workers[i] = f.startWorker(i, f.assign[i])
	return nil
}

// awaitStop waits for a worker the supervisor stopped: StopTimeout, then a warning
// with every goroutine's stack, then StopTimeout more before it gives up with
// ErrWorkerNotStopped. When ctx ends (Join) it returns at once: the worker is
// retired, and Join waits for it.
func (f *flusher) awaitStop(ctx context.Context, w *worker) error {
	t := time.NewTimer(f.cfg.StopTimeout)
	defer t.Stop()
	for escalated := false; ; escalated = true {
		select {
		case <-w.done:
			return nil
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if escalated {
			err := &WorkerError{Worker: w.index, Shards: w.shards(), Err: ErrWorkerNotStopped}
			f.log.Error("span flusher worker does not stop; failing rather than run two workers on its shards", zap.Error(err))
			return err
		}
		f.log.Warn("span flusher worker has not stopped; waiting once more",
			zap.Int("worker", w.index), zap.Int32s("shards", w.shards()),
			zap.Duration("wait", f.cfg.StopTimeout), zap.ByteString("goroutines", allStacks()))
		t.Reset(f.cfg.StopTimeout)
	}
}

// allStacks returns every goroutine's stack, for logs about a worker that does not
// stop.
func allStacks() []byte {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}
