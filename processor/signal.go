package processor

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// SignalContext returns a context that is cancelled by the first SIGINT or SIGTERM,
// so that Run shuts down cleanly. A second signal exits the process at once with
// status 1, for when the clean shutdown hangs. stop releases the signals and cancels
// the context.
func SignalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signalContext(ctx, os.Exit, syscall.SIGINT, syscall.SIGTERM)
}

func signalContext(parent context.Context, exit func(int), sigs ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	go func() {
		defer signal.Stop(ch)
		select {
		case <-ch:
			cancel()
		case <-done:
			return
		}
		select {
		case <-ch:
			exit(1)
		case <-done:
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() { close(done) })
		cancel()
	}
	return ctx, stop
}
