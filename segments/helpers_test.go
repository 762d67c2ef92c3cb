package segments

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creekstream/creek/segments/store"
)

// Spans are written as the contract writes them: ids of 16 hex characters, e.g. id("a")
// = "aaaaaaaaaaaaaaaa", in trace traceA of project 1.
const traceA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func id(c string) string { return strings.Repeat(c, 16) }

var bg = context.Background()

// span decodes a span of trace traceA: span(t, "a", "b", 0) is a -> b read from
// partition 0; parent "" makes a root.
func span(t testing.TB, self, parent string, partition int32) store.Span {
	t.Helper()
	m := map[string]any{
		"project_id": 1, "trace_id": traceA, "span_id": id(self),
		"start_timestamp": 1699999999.0, "end_timestamp": 1700000000.0,
	}
	if parent != "" {
		m["parent_span_id"] = id(parent)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Decode(raw, partition)
	if err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	return s
}

// segKeyA is the key of the segment of trace traceA rooted at root.
func segKeyA(root string) string { return "span-buf:s:{1:" + traceA + "}:" + root }

// summarize returns segment key -> the first letters of its spans' ids, sorted.
func summarize(t testing.TB, segs map[string]store.FlushedSegment) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for key, seg := range segs {
		var ids []string
		for _, raw := range seg.Spans {
			var s struct {
				SpanID string `json:"span_id"`
			}
			if err := json.Unmarshal(raw, &s); err != nil || s.SpanID == "" {
				t.Fatalf("output span %s has no span_id: %v", raw, err)
			}
			ids = append(ids, s.SpanID[:1])
		}
		slices.Sort(ids)
		out[key] = strings.Join(ids, "")
	}
	return out
}

// runConsumer runs c until the test ends, then cancels it and checks that Run
// returns nil within 30 s.
func runConsumer(t *testing.T, ctx context.Context, c *Consumer) {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run = %v, want nil after cancellation", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30 s of cancellation")
		}
	})
}
