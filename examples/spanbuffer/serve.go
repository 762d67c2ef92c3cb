package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/segments"
)

// healthWindow is how recently every flusher worker must have completed a cycle for
// /healthz to answer 200. The example's workers idle for 100 ms between cycles, so a
// worker silent for this long is stuck on Redis or Kafka; the consumer's supervisor
// replaces it only after FlusherConfig.MaxUnhealthy (60 s).
const healthWindow = 10 * time.Second

// shutdownTimeout bounds the wait for requests in flight when the server stops.
const shutdownTimeout = 5 * time.Second

// health answers /healthz from the span buffer consumer's flusher workers (see
// segments.Consumer.Workers). It is set up before the consumer exists and told
// when the consumer starts and stops.
type health struct {
	consumer atomic.Pointer[segments.Consumer]
	stopped  atomic.Bool
	now      func() time.Time
}

func (h *health) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	code, msg := h.check()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// check returns the status code and text of /healthz: 200 while the consumer runs
// with partitions assigned and every flusher worker completed a cycle within
// healthWindow, 503 otherwise.
func (h *health) check() (int, string) {
	c := h.consumer.Load()
	switch {
	case h.stopped.Load():
		return http.StatusServiceUnavailable, "not healthy: the consumer has stopped"
	case c == nil:
		return http.StatusServiceUnavailable, "not healthy: the consumer is starting"
	}
	workers := c.Workers()
	if len(workers) == 0 {
		return http.StatusServiceUnavailable, "not healthy: no partitions assigned yet"
	}
	now := h.now()
	var desc []string
	for _, ws := range workers {
		if ws.HealthySince.IsZero() {
			return http.StatusServiceUnavailable, fmt.Sprintf("not healthy: flusher worker %d (shards %v) has not completed a cycle yet", ws.Worker, ws.Shards)
		}
		age := now.Sub(ws.HealthySince)
		if age > healthWindow {
			return http.StatusServiceUnavailable, fmt.Sprintf("not healthy: flusher worker %d (shards %v) last completed a cycle %v ago (window %v)",
				ws.Worker, ws.Shards, age.Round(time.Millisecond), healthWindow)
		}
		desc = append(desc, fmt.Sprintf("worker %d shards %v: cycle %v ago, %d restarts", ws.Worker, ws.Shards, age.Round(time.Millisecond), ws.Restarts))
	}
	return http.StatusOK, fmt.Sprintf("ok: %d flusher workers\n%s", len(workers), strings.Join(desc, "\n"))
}

// serve serves /metrics from m and /healthz from h on ln until the returned stop
// is called. stop shuts the server down, waiting at most shutdownTimeout for
// requests in flight, waits for its goroutine and returns why it ended if not by
// stop.
func serve(ln net.Listener, m *metrics.Prometheus, h *health, log *zap.Logger) (stop func() error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.Handle("GET /healthz", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		err := srv.Shutdown(ctx)
		if err != nil {
			err = errors.Join(fmt.Errorf("http server shutdown: %w", err), srv.Close())
		}
		if serr := <-done; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("http server: %w", serr))
		}
		return err
	}
}
