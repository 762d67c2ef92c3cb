package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/creekstream/creek/internal/redistest"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/redis/go-redis/v9"
)

// rawSpan is a span whose payload is exactly {"span_id":"<id>"}: 30 bytes, for the
// size cases.
func rawSpan(self, parent string) Span {
	s := Span{ProjectID: 1, TraceID: traceA, SpanID: id(self), Payload: []byte(`{"span_id":"` + id(self) + `"}`)}
	if parent != "" {
		s.ParentSpanID = id(parent)
	}
	return s
}

// paddedSpan is rawSpan with pad more bytes of payload.
func paddedSpan(self, parent string, pad int) Span {
	s := rawSpan(self, parent)
	s.Payload = []byte(`{"span_id":"` + id(self) + `","pad":"` + strings.Repeat("x", pad) + `"}`)
	return s
}

func TestMaxSegmentBytes(t *testing.T) {
	cases := []struct {
		name    string
		limit   int
		batches [][]Span
		// detaches is the batch whose subsegment is detached, if any.
		detaches int
		want     func(detachedKey string) map[string]string
	}{
		{
			name:     "over the limit detaches",
			limit:    70,
			batches:  [][]Span{{rawSpan("b", "a")}, {rawSpan("c", "a")}, {rawSpan("d", "a")}},
			detaches: 2,
			want: func(detached string) map[string]string {
				return map[string]string{segKeyA(id("a")): "bc", detached: "d"}
			},
		},
		{
			// The detached subsegment's bytes do not count against the segment it
			// left: a later one that fits still joins.
			name:     "a detached subsegment leaves the segment's size as it was",
			limit:    100,
			batches:  [][]Span{{rawSpan("b", "a")}, {rawSpan("c", "a")}, {paddedSpan("d", "a", 20)}, {rawSpan("e", "a")}},
			detaches: 2,
			want: func(detached string) map[string]string {
				return map[string]string{segKeyA(id("a")): "bce", detached: "d"}
			},
		},
		{
			name:    "under the limit merges",
			limit:   DefaultMaxSegmentBytes,
			batches: [][]Span{{rawSpan("b", "a")}, {rawSpan("c", "a")}},
			want: func(string) map[string]string {
				return map[string]string{segKeyA(id("a")): "bc"}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachStore(t, func(t *testing.T, s store) {
				b := newTestBuffer(t, s.client, Config{MaxSegmentBytes: tc.limit})
				for _, batch := range tc.batches {
					ingest(t, b, at(0), batch...)
				}
				// Without a root the segments wait for Timeout.
				if _, got := flushed(t, b, at(59)); len(got) != 0 {
					t.Fatalf("flush at 59 gave %v, want nothing", got)
				}
				segs, got := flushed(t, b, at(61))
				detached := segKeyA(saltOf([]*Span{&tc.batches[tc.detaches][0]}))
				if want := tc.want(detached); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("flushed %v, want %v", got, want)
				}
				assertAllExpire(t, s.client)
				done(t, b, segs)
				assertOnlyRootFlags(t, s.client)
			})
		})
	}
}

func TestMessages(t *testing.T) {
	// Five spans whose messages hold three at most under 500 bytes.
	var five [][]byte
	for _, c := range "abcde" {
		five = append(five, []byte(fmt.Sprintf(`{"span_id":"%s","pad":"%s"}`, id(string(c)), strings.Repeat("x", 90))))
	}
	cases := []struct {
		name     string
		spans    [][]byte
		limit    int
		want     []int // spans per message
		skipping bool
	}{
		{name: "chunked", spans: five, limit: 500, want: []int{3, 2}, skipping: true},
		{name: "under the limit", spans: five, limit: 10000, want: []int{5}},
		{name: "one span over the limit", spans: five[:1], limit: 50, want: []int{1}, skipping: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(redistest.NotUsed(), Config{MaxSegmentBytes: tc.limit})
			if err != nil {
				t.Fatal(err)
			}
			msgs, err := b.Messages(FlushedSegment{Spans: tc.spans})
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != len(tc.want) {
				t.Fatalf("%d messages, want %d", len(msgs), len(tc.want))
			}
			ids := map[string]bool{}
			next := 0
			for i, m := range msgs {
				var got struct {
					FlushID        string            `json:"flush_id"`
					Spans          []json.RawMessage `json:"spans"`
					SkipEnrichment *bool             `json:"skip_enrichment"`
				}
				if err := json.Unmarshal(m, &got); err != nil {
					t.Fatalf("message %d is not JSON: %v\n%s", i, err, m)
				}
				if len(got.FlushID) != 32 || strings.Trim(got.FlushID, "0123456789abcdef") != "" || ids[got.FlushID] {
					t.Errorf("message %d: flush_id %q is not 32 fresh hex digits", i, got.FlushID)
				}
				ids[got.FlushID] = true
				if len(got.Spans) != tc.want[i] {
					t.Errorf("message %d has %d spans, want %d", i, len(got.Spans), tc.want[i])
				}
				for _, sp := range got.Spans {
					if string(sp) != string(tc.spans[next]) {
						t.Errorf("message %d: span %s, want %s (order kept)", i, sp, tc.spans[next])
					}
					next++
				}
				if (got.SkipEnrichment != nil && *got.SkipEnrichment) != tc.skipping {
					t.Errorf("message %d: skip_enrichment %v, want %v", i, got.SkipEnrichment != nil, tc.skipping)
				}
				if i < len(msgs)-1 && len(m) > tc.limit {
					t.Errorf("message %d is %d bytes, over the limit %d", i, len(m), tc.limit)
				}
			}
		})
	}
}

func TestSliceQueueKey(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		b := newTestBuffer(t, s.client, Config{Slice: "2"})
		ingest(t, b, at(0), span(t, "a", "", 0))
		var queues []string
		for _, k := range allKeys(t, s.client) {
			if strings.HasPrefix(k, "span-buf:q:") {
				queues = append(queues, k)
			}
		}
		if fmt.Sprint(queues) != "[span-buf:q:2-0]" {
			t.Fatalf("queue keys %v, want [span-buf:q:2-0]", queues)
		}
		segs, got := flushed(t, b, at(11))
		if len(got) != 1 || segs[segKeyA(id("a"))].QueueKey != "span-buf:q:2-0" {
			t.Fatalf("flushed %v from %v, want segment a from span-buf:q:2-0", got, segs)
		}
		done(t, b, segs)
		assertOnlyRootFlags(t, s.client)
	})
}

// TestNamespacesShareARedis: two buffers in different namespaces on one Redis, fed
// the same trace, each flush exactly their own spans, and every key of each carries
// its namespace.
func TestNamespacesShareARedis(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		blue := newTestBuffer(t, s.client, Config{Namespace: "blue"})
		green := newTestBuffer(t, s.client, Config{Namespace: "green"})
		ingest(t, blue, at(0), span(t, "a", "", 0), span(t, "b", "a", 0))
		ingest(t, green, at(0), span(t, "a", "", 0), span(t, "c", "a", 0))
		for _, k := range allKeys(t, s.client) {
			if !strings.HasPrefix(k, "span-buf:blue:") && !strings.HasPrefix(k, "span-buf:green:") {
				t.Errorf("key %s carries no namespace", k)
			}
		}
		for _, tc := range []struct {
			b    *testBuffer
			ns   string
			want string
		}{{blue, "blue", "ab"}, {green, "green", "ac"}} {
			segs, got := flushed(t, tc.b, at(11))
			key := keys{prefix: keyPrefix(tc.ns)}.segment(traceTag(1, traceA), id("a"))
			if fmt.Sprint(got) != fmt.Sprint(map[string]string{key: tc.want}) {
				t.Fatalf("namespace %s flushed %v, want {%s: %s}", tc.ns, got, key, tc.want)
			}
			if q := segs[key].QueueKey; q != "span-buf:"+tc.ns+":q:0" {
				t.Errorf("namespace %s flushed from queue %s, want span-buf:%s:q:0", tc.ns, q, tc.ns)
			}
			done(t, tc.b, segs)
		}
		assertOnlyRootFlags(t, s.client)
	})
}

func TestNamespaceRejectsBraces(t *testing.T) {
	_, err := New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), Config{Namespace: "a{b}"})
	if err == nil || !strings.Contains(err.Error(), "Namespace") {
		t.Fatalf("New with a namespace holding braces = %v, want an error naming Config.Namespace", err)
	}
}

func TestRouting(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		b := newTestBuffer(t, s.client, Config{})
		b.shards = []int32{0, 1, 2}
		ingest(t, b, at(0), span(t, "a", "b", 1))
		b.shards = []int32{1, 2, 3}
		ingest(t, b, at(1), span(t, "b", "", 1))
		segs, got := flushed(t, b, at(12))
		want := map[string]string{segKeyA(id("b")): "ab"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("flushed %v, want %v", got, want)
		}
		if q := segs[segKeyA(id("b"))].QueueKey; q != "span-buf:q:1" {
			t.Fatalf("segment came from queue %s, want span-buf:q:1", q)
		}
		done(t, b, segs)
		assertAllExpire(t, s.client)
		assertOnlyRootFlags(t, s.client)
	})
}

func TestRebalance(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		b := newTestBuffer(t, s.client, Config{})
		ingest(t, b, at(0), span(t, "a", "", 0))
		segs, got := flushed(t, b, at(11))
		if fmt.Sprint(got) != fmt.Sprint(map[string]string{segKeyA(id("a")): "a"}) {
			t.Fatalf("flushed %v at 11, want segment a", got)
		}
		// The shard moves away before the segment was cleaned up: this buffer must not
		// flush it again.
		b.shards = nil
		if _, got := flushed(t, b, at(20)); len(got) != 0 {
			t.Fatalf("flush without shards gave %v, want nothing", got)
		}
		done(t, b, segs)
		assertOnlyRootFlags(t, s.client)
	})
}

func TestFlushLock(t *testing.T) {
	cases := []struct {
		name     string
		lockTTL  time.Duration
		segments int
	}{
		{name: "no lock", lockTTL: 0, segments: 2},
		{name: "lock", lockTTL: 10 * time.Second, segments: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachStore(t, func(t *testing.T, s store) {
				one := newTestBuffer(t, s.client, Config{FlushLockTTL: tc.lockTTL})
				two := newTestBuffer(t, s.client, Config{FlushLockTTL: tc.lockTTL})
				one.shards = []int32{0}
				two.shards = []int32{1}
				ingest(t, one, at(0), span(t, "b", "", 0), span(t, "a", "b", 1))

				segs1, stats1, err := one.flushShards(at(11))
				if err != nil {
					t.Fatal(err)
				}
				segs2, stats2, err := two.flushShards(at(11))
				if err != nil {
					t.Fatal(err)
				}
				if n := len(segs1) + len(segs2); n != tc.segments {
					t.Fatalf("%d segments flushed, want %d", n, tc.segments)
				}
				if tc.lockTTL > 0 && stats2.LockContention != 1 {
					t.Errorf("second flusher counted %d lock contentions, want 1", stats2.LockContention)
				}
				if stats1.Segments != 1 || stats1.Spans != 2 {
					t.Errorf("first flusher: %d segments of %d spans, want 1 of 2", stats1.Segments, stats1.Spans)
				}
				done(t, one, segs1)
				done(t, two, segs2)
				if n, err := s.client.Exists(bg, testKeys.lock(segKeyA(id("b")))).Result(); err != nil || n != 0 {
					t.Fatalf("flush lock still there after cleanup (exists %d, %v)", n, err)
				}
				// What the locked flusher skipped is found empty and dropped from its queue.
				_, stats, err := two.flushShards(at(12))
				if err != nil {
					t.Fatal(err)
				}
				if tc.lockTTL > 0 && stats.Expired != 1 {
					t.Errorf("second flusher found %d empty queue entries, want 1", stats.Expired)
				}
				assertAllExpire(t, s.client)
				assertOnlyRootFlags(t, s.client)
			})
		})
	}
}

func TestEndToEnd(t *testing.T) {
	const input = `{"project_id":12,"span_id":"aaaaaaaaaaaaaaaa","trace_id":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","start_timestamp":1699999999.0,"end_timestamp":1700000000.0}`
	const want = `{"project_id":12,"span_id":"aaaaaaaaaaaaaaaa","trace_id":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","start_timestamp":1699999999.0,"end_timestamp":1700000000.0,"is_segment":true,"attributes":{"sentry.segment.id":{"type":"string","value":"aaaaaaaaaaaaaaaa"}}}`
	eachStore(t, func(t *testing.T, s store) {
		for _, level := range []int{0, 3} {
			s.reset(t)
			b := newTestBuffer(t, s.client, Config{CompressionLevel: level})
			sp, err := Decode([]byte(input), 0)
			if err != nil {
				t.Fatal(err)
			}
			ingest(t, b, at(0), sp)
			if segs, _ := flushed(t, b, at(9)); len(segs) != 0 {
				t.Fatalf("compression %d: flushed before the deadline", level)
			}
			segs, _ := flushed(t, b, at(10))
			if len(segs) != 1 {
				t.Fatalf("compression %d: %d segments, want 1", level, len(segs))
			}
			for _, seg := range segs {
				msgs, err := b.Messages(seg)
				if err != nil {
					t.Fatal(err)
				}
				var m struct{ Spans []json.RawMessage }
				if len(msgs) != 1 || json.Unmarshal(msgs[0], &m) != nil || len(m.Spans) != 1 || string(m.Spans[0]) != want {
					t.Fatalf("compression %d: messages %q, want one with the span\n%s", level, msgs, want)
				}
			}
			done(t, b, segs)
			assertOnlyRootFlags(t, s.client)
		}
	})
}

// TestRedelivery: spans read again from Kafka after their segment was flushed (a
// crash or a rewind before their offsets were committed) are dropped at ingest and
// counted, whether the copies fill whole payload sets or share one with spans not
// flushed before; a span never flushed still comes out, as a late span does.
func TestRedelivery(t *testing.T) {
	type edge struct{ self, parent string }
	cases := []struct {
		name string
		// window is Config.RedeliveryWindow; 0 the default.
		window time.Duration
		// first is ingested at 0 and flushed at 11 (it holds root a).
		first []edge
		// again is ingested at 1, after that flush.
		again []edge
		// want is what flushes at 100 (any timeout has passed).
		want              map[string]string
		redelivered       int
		droppedSubsegment int
	}{
		{
			name:  "the whole trace read again",
			first: []edge{{"a", ""}, {"b", "a"}, {"c", "b"}}, again: []edge{{"a", ""}, {"b", "a"}, {"c", "b"}},
			want: map[string]string{}, redelivered: 3, droppedSubsegment: 1,
		},
		{
			// Without the record c would form a fragment under b, with b's id as its
			// segment id: a copy of c in a segment not its own.
			name:  "the tail read again",
			first: []edge{{"a", ""}, {"b", "a"}, {"c", "b"}}, again: []edge{{"c", "b"}},
			want: map[string]string{}, redelivered: 1, droppedSubsegment: 1,
		},
		{
			name:  "read again with a span not flushed before",
			first: []edge{{"a", ""}, {"b", "a"}}, again: []edge{{"b", "a"}, {"c", "b"}},
			// c is late for segment a and hangs under the flushed b: it comes out
			// under a (the has-root flag stayed), b is left out.
			want: map[string]string{segKeyA(id("a")): "c"}, redelivered: 1,
		},
		{
			// The contract's late span: under a flushed span, a segment of its own.
			name:  "a late span",
			first: []edge{{"a", ""}, {"b", "a"}}, again: []edge{{"c", "b"}},
			want: map[string]string{segKeyA(id("b")): "c"},
		},
		{
			name:   "no record kept",
			window: -1,
			first:  []edge{{"a", ""}, {"b", "a"}, {"c", "b"}}, again: []edge{{"c", "b"}},
			want: map[string]string{segKeyA(id("b")): "c"},
		},
	}
	spans := func(t *testing.T, edges []edge) []Span {
		out := make([]Span, len(edges))
		for i, e := range edges {
			out[i] = span(t, e.self, e.parent, 0)
		}
		return out
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachStore(t, func(t *testing.T, s store) {
				rec := metricstest.NewRecorder()
				b := newTestBuffer(t, s.client, Config{RedeliveryWindow: tc.window, Metrics: rec})
				ingest(t, b, at(0), spans(t, tc.first)...)
				segs, _ := flushed(t, b, at(11))
				if len(segs) != 1 {
					t.Fatalf("flushed %d segments at 11, want segment a", len(segs))
				}
				done(t, b, segs)

				stats, err := b.Ingest(bg, spans(t, tc.again), At(at(1)))
				if err != nil {
					t.Fatalf("Ingest: %v", err)
				}
				if stats.Redelivered != tc.redelivered || len(stats.DroppedSalts) != tc.droppedSubsegment {
					t.Errorf("Ingest left out %d spans and %d payload sets %v, want %d and %d",
						stats.Redelivered, len(stats.DroppedSalts), stats.DroppedSalts, tc.redelivered, tc.droppedSubsegment)
				}
				if n := rec.Counter("spans.buffer.process_spans.redelivered"); n != int64(tc.redelivered) {
					t.Errorf("spans.buffer.process_spans.redelivered = %d, want %d", n, tc.redelivered)
				}
				segs, got := flushed(t, b, at(100))
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("flushed %v at 100, want %v", got, tc.want)
				}
				done(t, b, segs)
				assertAllExpire(t, s.client)
				assertOnlyRootFlags(t, s.client)
				window := b.cfg.RedeliveryWindow
				ttl, err := s.client.PTTL(bg, testKeys.flushed(traceTag(1, traceA))).Result()
				switch {
				case err != nil:
					t.Fatalf("PTTL of the flushed-span record: %v", err)
				case window < 0 && ttl != -2*time.Nanosecond && ttl != -2*time.Millisecond:
					t.Errorf("the flushed-span record exists (PTTL %v) with the window off", ttl)
				case window > 0 && (ttl <= 0 || ttl > window):
					t.Errorf("the flushed-span record's PTTL is %v, want in (0, %v]", ttl, window)
				}
			})
		})
	}
}
