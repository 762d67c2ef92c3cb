package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestRunChecksEverySpan(t *testing.T) {
	var out bytes.Buffer
	o := options{traces: 100, rate: 5000, invalid: 4, partitions: 2,
		rootTimeout: time.Second, timeout: 3 * time.Second, deadline: 60 * time.Second}
	if err := run(context.Background(), o, nil, &out, zap.NewNop()); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "check: OK: every one of the") || !strings.Contains(out.String(), "DLQ 4 of 4 invalid") {
		t.Fatalf("output lacks the passing check:\n%s", out.String())
	}
}

// With a listener the example serves /metrics and /healthz while the consumer runs,
// lingers after the check until its context ends, and then stops the server.
func TestServesMetricsAndHealth(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	out := newWatchedOutput("lingering for")
	o := options{traces: 50, rate: 5000, invalid: 2, partitions: 2,
		rootTimeout: time.Second, timeout: 3 * time.Second, deadline: 60 * time.Second, linger: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, ln, out, zap.NewNop()) }()

	// Once it lingers the check is over and the consumer is still running.
	select {
	case <-out.seen:
	case err := <-done:
		t.Fatalf("run returned before lingering: %v\n%s", err, out.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("no linger line within 90 s:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "check: OK") {
		t.Errorf("output lacks the passing check:\n%s", out.String())
	}

	code, body := get(t, base+"/healthz")
	if code != http.StatusOK || !strings.HasPrefix(body, "ok: 2 flusher workers") {
		t.Errorf("/healthz: %d %q, want 200 and ok with 2 workers", code, body)
	}
	// The loop's figures reach the backend through its metrics buffer, which flushes
	// once a second: scrape until the last commits are in.
	want := []string{
		"# TYPE creek_spans_buffer_process_spans_total counter",
		"# TYPE creek_spans_buffer_flusher_produce_seconds histogram",
		"# TYPE creek_consumer_run_total counter",
		`creek_consumer_commit_status_total{status="ok"}`,
		"# TYPE go_goroutines gauge",
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(30 * time.Second)
	for {
		code, body = get(t, base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d\n%s", code, body)
		}
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return strings.Contains(body, w) })
		if len(missing) == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-giveUp:
			t.Fatalf("/metrics still lacks %q after 30 s:\n%s", missing, body)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("run did not return within 60 s of its context ending")
	}
	if resp, err := http.Get(base + "/healthz"); err == nil {
		_ = resp.Body.Close()
		t.Errorf("the server still answers after run returned: %s", resp.Status)
	}
}

func TestHealthBeforeAndAfterTheConsumer(t *testing.T) {
	h := &health{now: time.Now}
	if code, msg := h.check(); code != http.StatusServiceUnavailable || !strings.Contains(msg, "starting") {
		t.Errorf("before the consumer: %d %q", code, msg)
	}
	h.stopped.Store(true)
	if code, msg := h.check(); code != http.StatusServiceUnavailable || !strings.Contains(msg, "stopped") {
		t.Errorf("after the consumer: %d %q", code, msg)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// watchedOutput is an output safe to read while run writes it; seen is closed once
// a write brought the text want.
type watchedOutput struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
}

func newWatchedOutput(want string) *watchedOutput {
	return &watchedOutput{want: want, seen: make(chan struct{})}
}

func (w *watchedOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	n, err := w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.seen)
	}
	return n, err
}

func (w *watchedOutput) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// The check is strict: one span out in a wrong segment, even beside its right one,
// fails it and is listed.
func TestReportFailsLoudly(t *testing.T) {
	gen := generate(3, 2, 2)
	var root, child string
	for id, want := range gen.expected {
		if id != want {
			child, root = id, want
			break
		}
	}
	cases := []struct {
		name string
		edit func(r *reader)
		want []string
	}{
		{"all delivered", func(*reader) {}, []string{"check: OK: every one of the"}},
		{"a duplicate is allowed", func(r *reader) {
			r.seen[child] = append(r.seen[child], emission{segment: root})
		}, []string{"check: OK", "duplicates 1"}},
		{"in a wrong segment", func(r *reader) {
			r.seen[child] = []emission{{segment: child}}
		}, []string{"check: FAILED", "1 in a wrong segment", "span " + child, "belongs to segment " + root}},
		{"also in a wrong segment", func(r *reader) {
			r.seen[child] = append(r.seen[child], emission{segment: child})
		}, []string{"check: FAILED", "1 in a wrong segment"}},
		{"missing", func(r *reader) { delete(r.seen, child) }, []string{"check: FAILED", "1 spans missing", "span " + child, "of segment " + root + " never came out"}},
		{"not dead-lettered", func(r *reader) { clear(r.dead) }, []string{"check: FAILED", "2 invalid spans not in the DLQ"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &reader{seen: make(map[string][]emission), dead: make(map[string]bool)}
			for id, want := range gen.expected {
				r.seen[id] = []emission{{segment: want}}
			}
			for v := range gen.invalid {
				r.dead[v] = true
			}
			for _, rec := range gen.records {
				rec.Timestamp = time.Now()
			}
			tc.edit(r)
			var out bytes.Buffer
			err := report(&out, gen, r, time.Second)
			if failed := strings.Contains(tc.want[0], "FAILED"); failed != (err != nil) {
				t.Fatalf("report error %v, want failure %v\n%s", err, failed, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("report lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
