package stuckdetector

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/creekstream/creek/internal/stacks"
	"go.uber.org/zap"
)

// Watch reports a named operation that has not finished within timeout: one warning
// with every goroutine's stack when the timeout passes, and an info log with the
// time it took when it finishes after that. Call done when the operation finishes;
// it stops the watching goroutine and returns when that goroutine has exited, and it
// is safe to call more than once. Cancelling ctx stops the watch without a report.
// Watch panics if timeout is not positive.
func Watch(ctx context.Context, name string, timeout time.Duration, logger *zap.Logger) (done func()) {
	if timeout <= 0 {
		panic(fmt.Sprintf("stuckdetector: Watch(%q) needs a positive timeout, got %v", name, timeout))
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	finished := make(chan struct{})
	exited := make(chan struct{})
	started := time.Now()
	go func() {
		defer close(exited)
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-t.C:
		case <-finished:
			return
		case <-ctx.Done():
			return
		}
		logger.Warn("operation has not finished in time",
			zap.String("operation", name), zap.Duration("timeout", timeout),
			zap.ByteString("goroutines", stacks.All()))
		select {
		case <-finished:
			logger.Info("slow operation finished",
				zap.String("operation", name), zap.Duration("took", time.Since(started)))
		case <-ctx.Done():
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(finished) })
		<-exited
	}
}
