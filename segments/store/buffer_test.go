package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const traceA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

// id returns the 16-character span id made of c, as the contract writes them.
func id(c string) string { return strings.Repeat(c, 16) }

var t0 = time.Unix(1_700_000_000, 0)

// at returns t0 plus sec seconds: the Kafka time of a batch, or the flush clock.
func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

var bg = context.Background()

// span decodes a span of trace traceA, project 1, written as the contract does:
// span(t, "a", "b", 0) is a -> b read from partition 0; parent "" makes a root.
func span(t testing.TB, self, parent string, partition int32) Span {
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
	s, err := Decode(raw, partition)
	if err != nil {
		t.Fatalf("decoding %s: %v", raw, err)
	}
	return s
}

func allShards() []int32 {
	s := make([]int32, 32)
	for i := range s {
		s[i] = int32(i)
	}
	return s
}

// testBuffer is a Buffer with the shards a consumer owns, which its flushes cover.
type testBuffer struct {
	*Buffer
	shards []int32
}

func newTestBuffer(t testing.TB, c redis.UniversalClient, cfg Config) *testBuffer {
	t.Helper()
	b, err := New(c, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &testBuffer{Buffer: b, shards: allShards()}
}

// flushShards flushes the buffer's shards at now.
func (b *testBuffer) flushShards(now time.Time) (map[string]FlushedSegment, FlushStats, error) {
	return b.Flush(bg, b.shards, len(b.shards), At(now))
}

func ingest(t testing.TB, b *testBuffer, now time.Time, spans ...Span) {
	t.Helper()
	if _, err := b.Ingest(bg, spans, At(now)); err != nil {
		t.Fatalf("Ingest: %v", err)
	}
}

// outSpan is what the tests read back from an output span.
type outSpan struct {
	SpanID     string `json:"span_id"`
	IsSegment  bool   `json:"is_segment"`
	Attributes map[string]struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"attributes"`
}

// flushed flushes the buffer's shards at now, checks every output span's
// is_segment and segment id, and returns segment key -> sorted one-letter span ids.
func flushed(t testing.TB, b *testBuffer, now time.Time) (map[string]FlushedSegment, map[string]string) {
	t.Helper()
	segs, _, err := b.flushShards(now)
	if err != nil {
		t.Fatalf("Flush at %v: %v", now.Sub(t0), err)
	}
	return segs, summarize(t, segs)
}

func summarize(t testing.TB, segs map[string]FlushedSegment) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for key, seg := range segs {
		var ids []string
		for _, raw := range seg.Spans {
			var s outSpan
			if err := json.Unmarshal(raw, &s); err != nil {
				t.Fatalf("output span %s is not JSON: %v", raw, err)
			}
			if s.IsSegment != (s.SpanID == seg.RootID) {
				t.Errorf("span %s of segment %s: is_segment %v, want %v", s.SpanID, key, s.IsSegment, !s.IsSegment)
			}
			if a := s.Attributes["sentry.segment.id"]; a.Type != "string" || a.Value != seg.RootID {
				t.Errorf("span %s of segment %s: sentry.segment.id %+v, want string %s", s.SpanID, key, a, seg.RootID)
			}
			ids = append(ids, s.SpanID[:1])
		}
		slices.Sort(ids)
		out[key] = strings.Join(ids, "")
	}
	return out
}

func done(t testing.TB, b *testBuffer, segs map[string]FlushedSegment) {
	t.Helper()
	if err := b.Done(bg, segs); err != nil {
		t.Fatalf("Done: %v", err)
	}
}

func segKeyA(root string) string { return testKeys.segment(traceTag(1, traceA), root) }

// testKeys builds the keys of a buffer without a namespace.
var testKeys = keys{prefix: basePrefix}

func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := slices.Insert(slices.Clone(p), i, n-1)
			out = append(out, q)
		}
	}
	return out
}

// TestOrders runs the contract's order cases: every permutation of the spans, each
// span in its own batch, all in one batch, and (deep) split over two batches.
func TestOrders(t *testing.T) {
	type edge struct{ self, parent string }
	cases := []struct {
		name    string
		spans   []edge
		early   int // a flush at this time gives nothing
		flushAt int
		want    map[string]string
		splits  bool
	}{
		{
			name:  "basic",
			spans: []edge{{"a", "b"}, {"d", "b"}, {"c", "b"}, {"b", ""}},
			early: 5, flushAt: 11,
			want: map[string]string{segKeyA(id("b")): "abcd"},
		},
		{
			name:  "deep",
			spans: []edge{{"d", "b"}, {"b", "a"}, {"a", ""}, {"c", "a"}},
			early: 5, flushAt: 10,
			want:   map[string]string{segKeyA(id("a")): "abcd"},
			splits: true,
		},
		{
			name:  "deep2",
			spans: []edge{{"e", "d"}, {"d", "b"}, {"b", "c"}, {"c", "a"}, {"a", ""}},
			early: 5, flushAt: 11,
			want: map[string]string{segKeyA(id("a")): "abcde"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachStore(t, func(t *testing.T, s store) {
				runs := 0
				for _, perm := range permutations(len(tc.spans)) {
					spans := make([]Span, len(perm))
					for i, j := range perm {
						spans[i] = span(t, tc.spans[j].self, tc.spans[j].parent, 0)
					}
					var batchings [][][]Span
					single := make([][]Span, len(spans))
					for i := range spans {
						single[i] = spans[i : i+1]
					}
					batchings = append(batchings, single, [][]Span{spans})
					if tc.splits {
						for k := 1; k < len(spans); k++ {
							batchings = append(batchings, [][]Span{spans[:k], spans[k:]})
						}
					}
					for _, batches := range batchings {
						runs++
						s.reset(t)
						b := newTestBuffer(t, s.client, Config{})
						for _, batch := range batches {
							ingest(t, b, at(0), batch...)
						}
						order := fmt.Sprintf("order %v in %d batches", perm, len(batches))
						if _, got := flushed(t, b, at(tc.early)); len(got) != 0 {
							t.Fatalf("%s: flush at %d gave %v, want nothing", order, tc.early, got)
						}
						segs, got := flushed(t, b, at(tc.flushAt))
						if fmt.Sprint(got) != fmt.Sprint(tc.want) {
							t.Fatalf("%s: flush at %d gave %v, want %v", order, tc.flushAt, got, tc.want)
						}
						assertAllExpire(t, s.client)
						done(t, b, segs)
						if _, got := flushed(t, b, at(30)); len(got) != 0 {
							t.Fatalf("%s: flush at 30 after cleanup gave %v, want nothing", order, got)
						}
						assertAllExpire(t, s.client)
						assertOnlyRootFlags(t, s.client)
					}
				}
				t.Logf("%d orders and batchings checked", runs)
			})
		})
	}
}
