package strategies

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/creekstream/creek/processor"
	"go.uber.org/zap"
)

// DefaultLivenessWindow is how recently the loop must have polled to count as alive,
// unless told otherwise. It is well above the processor's 1 s consumer poll timeout,
// so an idle consumer stays alive.
const DefaultLivenessWindow = 5 * time.Second

// touchInterval is how often a polling Healthcheck touches its file: often enough
// for a liveness probe reading the mtime, rare enough to cost nothing.
const touchInterval = time.Second

// LivenessConfig says how a Liveness reports.
type LivenessConfig struct {
	// Path is a file whose modification time is set to now at most once a second
	// while the loop polls, for a Kubernetes liveness probe; it is created if
	// missing. Empty means no file.
	Path string
	// Window is how recently the loop must have polled for Handler to answer 200.
	// Zero means DefaultLivenessWindow.
	Window time.Duration
}

// Liveness records when a processor's loop last polled its strategy chain. It
// outlives the chains, which are rebuilt on every rebalance, so one Handler can serve
// it for the whole life of the processor. It is safe for concurrent use.
type Liveness struct {
	path   string
	window time.Duration
	o      options

	// Both hold the clock's UnixNano, 0 for never: the loop writes them, the HTTP
	// handler reads lastPoll from its own goroutine.
	lastPoll  atomic.Int64
	lastTouch atomic.Int64
}

// NewLiveness returns a Liveness configured by cfg. WithClock, WithLogger and
// WithMetrics apply.
func NewLiveness(cfg LivenessConfig, opts ...Option) (*Liveness, error) {
	if cfg.Window < 0 {
		return nil, fmt.Errorf("strategies: liveness: Window is %v; give a positive window or 0 for the default %v", cfg.Window, DefaultLivenessWindow)
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultLivenessWindow
	}
	return &Liveness{path: cfg.Path, window: cfg.Window, o: buildOptions(opts)}, nil
}

// polled records a poll and touches the file if a second has passed since the last
// touch.
func (l *Liveness) polled() {
	now := l.o.Now()
	l.lastPoll.Store(now.UnixNano())
	if l.path == "" || now.Sub(time.Unix(0, l.lastTouch.Load())) < touchInterval {
		return
	}
	// A failed touch is retried a second later, not returned: the probe failing is
	// the signal, and stopping the consumer over it would only make things worse.
	l.lastTouch.Store(now.UnixNano())
	if err := touch(l.path, now); err != nil {
		l.o.Logger.Warn("cannot touch healthcheck file", zap.String("path", l.path), zap.Error(err))
		return
	}
	l.o.Metrics.Increment("strategies.healthcheck.touch", 1)
}

func touch(path string, now time.Time) error {
	err := os.Chtimes(path, now, now)
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chtimes(path, now, now)
}

// Handler returns an HTTP handler answering 200 while the loop polled within the
// window and 503 otherwise, for a liveness probe over HTTP.
func (l *Liveness) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		last := l.lastPoll.Load()
		if last == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not alive: the consumer loop has not polled yet")
			return
		}
		if age := l.o.Now().Sub(time.Unix(0, last)); age > l.window {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not alive: the consumer loop last polled %v ago (window %v)\n", age, l.window)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// Healthcheck passes every message to the next step and, on every Poll, tells a
// Liveness that the loop is running.
type Healthcheck[T any] struct {
	live *Liveness
	next processor.Strategy[T]
}

// NewHealthcheck returns a Healthcheck that reports to live. Give every chain the
// processor builds the same live.
func NewHealthcheck[T any](live *Liveness, next processor.Strategy[T]) *Healthcheck[T] {
	return &Healthcheck[T]{live: live, next: next}
}

// Handler returns the Liveness's handler.
func (h *Healthcheck[T]) Handler() http.Handler { return h.live.Handler() }

// Submit passes msg to the next step.
func (h *Healthcheck[T]) Submit(msg processor.Message[T]) error { return h.next.Submit(msg) }

// Poll records that the loop is alive, then polls the next step.
func (h *Healthcheck[T]) Poll() error {
	h.live.polled()
	return h.next.Poll()
}

// Close closes the next step.
func (h *Healthcheck[T]) Close() { h.next.Close() }

// Join joins the next step.
func (h *Healthcheck[T]) Join(ctx context.Context) error { return h.next.Join(ctx) }

// Terminate terminates the next step.
func (h *Healthcheck[T]) Terminate() { h.next.Terminate() }
