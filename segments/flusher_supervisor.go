package segments

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/creekstream/creek/segments/store"
	"go.uber.org/zap"
)

// supervise waits for the start-up of workers, then checks the workers' health and
// Redis's memory every CheckInterval until ctx ends or the flusher fails.
func (f *flusher) supervise(ctx context.Context, workers []*worker) {
	defer close(f.superDone)
	if err := f.awaitStartup(ctx, workers); err != nil {
		if ctx.Err() == nil {
			f.log.Error("span flusher start-up failed", zap.Error(err))
			f.fail(err)
		}
		return
	}
	f.ready.Store(true)
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
	case errors.Is(err, store.ErrMemoryInfoUnavailable):
		f.log.Warn("Redis does not report its memory; MaxMemoryRatio backpressure is off", zap.Error(err))
		return false
	case err != nil:
		f.log.Warn("reading Redis memory failed; keeping the last value", zap.Error(err))
		return true
	}
	f.memRatio.Store(math.Float64bits(ratio))
	f.m.gauge("spans.buffer.flusher.memory_ratio", ratio)
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
		f.m.count("spans.buffer.flusher.unhealthy", 1, causeTag(cause), shardTag(s))
	}
	f.log.Warn("span flusher worker is unhealthy; replacing it",
		zap.Int("worker", i), zap.Int32s("shards", shards), zap.String("cause", cause),
		zap.Time("healthy_since", w.healthySince()), zap.Int("restarts", restarts))
	w.cancel()
	// When ctx ends (Join) the wait ends at once: the worker is retired, and Join
	// waits for it.
	first, cancel := context.WithTimeout(context.Background(), f.cfg.StopTimeout)
	err := f.awaitExit(first, ctx.Done(), w)
	cancel()
	if err != nil || ctx.Err() != nil {
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
