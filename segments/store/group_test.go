package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// groupReference is group as it was before its walk was memoised: every span walks
// its in-batch parents again, which is quadratic in a long chain. It stays here as
// the definition the faster group must agree with.
func groupReference(spans []Span) []*subsegment {
	type traceKey struct {
		project uint64
		trace   string
	}
	type trace struct {
		key   traceKey
		ids   map[string]*Span
		order []*Span
	}
	byTrace := make(map[traceKey]*trace)
	var traces []*trace
	for i := range spans {
		s := &spans[i]
		k := traceKey{s.ProjectID, s.TraceID}
		tr, ok := byTrace[k]
		if !ok {
			tr = &trace{key: k, ids: make(map[string]*Span)}
			byTrace[k] = tr
			traces = append(traces, tr)
		}
		if _, dup := tr.ids[s.SpanID]; !dup {
			tr.ids[s.SpanID] = s
			tr.order = append(tr.order, s)
		}
	}

	var out []*subsegment
	for _, tr := range traces {
		ids := tr.ids
		pt := traceTag(tr.key.project, tr.key.trace)
		bySub := make(map[string]*subsegment)
		for _, s := range tr.order {
			top, hasRoot := s.effectiveParent(), s.IsRoot()
			for hops := 0; !hasRoot && hops < len(ids); hops++ {
				p, ok := ids[top]
				if !ok {
					break
				}
				top, hasRoot = p.effectiveParent(), p.IsRoot()
			}
			sub, ok := bySub[top]
			if !ok {
				sub = &subsegment{pt: pt, top: top}
				bySub[top] = sub
				out = append(out, sub)
			}
			sub.hasRoot = sub.hasRoot || hasRoot
			sub.spans = append(sub.spans, s)
			sub.bytes += len(s.Payload)
			if !slices.Contains(sub.shards, s.Partition) {
				sub.shards = append(sub.shards, s.Partition)
			}
		}
	}
	for _, sub := range out {
		sub.salt = saltOf(sub.spans)
	}
	return out
}

// describeGroups renders subsegments with every field group sets, spans by their
// position in the batch so that the same span is recognised, not only its id.
func describeGroups(batch []Span, subs []*subsegment) string {
	var b strings.Builder
	for _, sub := range subs {
		fmt.Fprintf(&b, "%s top=%s root=%v bytes=%d shards=%v salt=%s spans=[", sub.pt, sub.top, sub.hasRoot, sub.bytes, sub.shards, sub.salt)
		for i, s := range sub.spans {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%d", s.indexIn(batch))
		}
		b.WriteString("]\n")
	}
	return b.String()
}

func (s *Span) indexIn(batch []Span) int {
	for i := range batch {
		if &batch[i] == s {
			return i
		}
	}
	return -1
}

// gspan is a span of the grouping tests: parent "" makes a root, seg is the segment
// id attribute.
func gspan(project uint64, trace, self, parent, seg string, isSegment bool, partition int32) Span {
	return Span{ProjectID: project, TraceID: trace, SpanID: self, ParentSpanID: parent, SegmentID: seg,
		IsSegment: isSegment, Partition: partition, Payload: []byte(self + "/" + parent)}
}

// chain returns n spans of one trace, each the child of the one before it; the first
// is a root when rooted, else the child of "out", a span not in the batch.
func chain(n int, rooted bool) []Span {
	spans := make([]Span, n)
	parent := "out"
	if rooted {
		parent = ""
	}
	for i := range spans {
		self := fmt.Sprintf("%016x", i+1)
		spans[i] = Span{ProjectID: 1, TraceID: traceA, SpanID: self, ParentSpanID: parent, Partition: int32(i % 4),
			Payload: []byte(`{"span_id":"` + self + `"}`)}
		parent = self
	}
	return spans
}

func reversed(spans []Span) []Span {
	out := slices.Clone(spans)
	slices.Reverse(out)
	return out
}

func TestGroup(t *testing.T) {
	g := func(self, parent string) Span { return gspan(1, traceA, self, parent, "", false, 0) }
	cases := []struct {
		name  string
		batch []Span
		want  string // top:hasRoot:span ids of each subsegment, in order
	}{
		{"chain with root", chain(5, true), "0000000000000001:true:1,2,3,4,5"},
		{"chain without root", chain(4, false), "out:false:1,2,3,4"},
		{"chain reversed", reversed(chain(4, true)), "0000000000000001:true:4,3,2,1"},
		{"tree", []Span{g("c", "b"), g("d", "b"), g("b", "a"), g("a", ""), g("e", "a"), g("f", "x"), g("h", "f")},
			"a:true:c,d,b,a,e x:false:f,h"},
		{"is_segment splits the chain", []Span{g("c", "b"), gspan(1, traceA, "b", "a", "", true, 1), g("a", "")},
			"b:true:c,b a:true:a"},
		{"segment id jumps over the chain", []Span{gspan(1, traceA, "c", "b", "a", false, 0), g("b", "z"), g("a", "")},
			"a:true:c,a z:false:b"},
		{"two-span cycle", []Span{g("a", "b"), g("b", "a")}, "b:false:a a:false:b"},
		{"three-span cycle with a tail", []Span{g("a", "b"), g("b", "c"), g("c", "a"), g("d", "a"), g("e", "d")},
			"a:false:a b:false:b,e c:false:c,d"},
		{"own segment id", []Span{gspan(1, traceA, "a", "b", "a", false, 0), g("c", "a")}, "a:false:a,c"},
		{"repeated ids", []Span{g("b", "a"), g("a", ""), g("b", "x"), g("a", "b")}, "a:true:b,a"},
		{"two traces and projects", []Span{g("b", "a"), gspan(2, traceA, "b", "a", "", false, 0), gspan(1, "t2", "a", "", "", false, 0), g("a", "")},
			"a:true:b,a a:false:b a:true:a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			subs := group(tc.batch)
			var got []string
			for _, sub := range subs {
				ids := make([]string, len(sub.spans))
				for i, s := range sub.spans {
					ids[i] = strings.TrimLeft(s.SpanID, "0")
				}
				got = append(got, fmt.Sprintf("%s:%v:%s", sub.top, sub.hasRoot, strings.Join(ids, ",")))
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("group = %s, want %s", g, tc.want)
			}
			if got, want := describeGroups(tc.batch, subs), describeGroups(tc.batch, groupReference(tc.batch)); got != want {
				t.Errorf("group differs from the reference:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestGroupMatchesReference compares group with the reference over random batches:
// few ids, so that parents are often in the batch and ids repeat; some roots, some
// is_segment, some segment ids, cycles, several traces and projects.
func TestGroupMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 5))
	for round := range 20000 {
		n := 1 + rng.IntN(24)
		alphabet := 2 + rng.IntN(n+4)
		pick := func() string { return fmt.Sprintf("s%d", rng.IntN(alphabet)) }
		batch := make([]Span, n)
		for i := range batch {
			parent, seg := pick(), ""
			switch rng.IntN(8) {
			case 0:
				parent = ""
			case 1:
				seg = pick()
			}
			batch[i] = gspan(uint64(1+rng.IntN(2)), fmt.Sprintf("t%d", rng.IntN(2)), pick(), parent, seg, rng.IntN(10) == 0, int32(rng.IntN(3)))
		}
		if got, want := describeGroups(batch, group(batch)), describeGroups(batch, groupReference(batch)); got != want {
			t.Fatalf("round %d: batch %+v\ngroup gave\n%s\nthe reference\n%s", round, batch, got, want)
		}
	}
	for _, n := range []int{1, 2, 1000} {
		for _, batch := range [][]Span{chain(n, true), chain(n, false), reversed(chain(n, true))} {
			if got, want := describeGroups(batch, group(batch)), describeGroups(batch, groupReference(batch)); got != want {
				t.Fatalf("chain of %d: group gave\n%s\nthe reference\n%s", n, got, want)
			}
		}
	}
}

// BenchmarkGroupChain groups one batch holding a single chain, each span the child
// of the one before it, in batch order and reversed.
func BenchmarkGroupChain(b *testing.B) {
	for _, n := range []int{10_000, 20_000, 40_000, 100_000} {
		for _, order := range []string{"forward", "reversed"} {
			batch := chain(n, true)
			if order == "reversed" {
				batch = reversed(batch)
			}
			b.Run(fmt.Sprintf("spans=%d/%s", n, order), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if subs := group(batch); len(subs) != 1 {
						b.Fatalf("%d subsegments, want 1", len(subs))
					}
				}
			})
		}
	}
}

// BenchmarkIngestChain ingests one batch holding a chain of 10 000 to 100 000 spans,
// all one subsegment and so one add script call with every span id, into miniredis
// and into the real redis-server at CREEK_REDIS_ADDR (database 9) when that is set;
// Redis is emptied before each batch. After the timed batches it flushes the segment
// once to check every span is there and cleans it up. ns/op is one batch; on
// redis-server script-ms/op is the add script's own time (INFO commandstats).
func BenchmarkIngestChain(b *testing.B) {
	type backend struct {
		name   string
		client *redis.Client
		real   bool
	}
	m := miniredis.RunT(b)
	backends := []backend{{"miniredis", redis.NewClient(&redis.Options{Addr: m.Addr()}), false}}
	if addr := os.Getenv("CREEK_REDIS_ADDR"); addr != "" {
		backends = append(backends, backend{"redis-server", redis.NewClient(&redis.Options{Addr: addr, DB: realRedisDB}), true})
	}
	for _, be := range backends {
		defer be.client.Close()
		for _, n := range []int{10_000, 20_000, 40_000, 100_000} {
			b.Run(fmt.Sprintf("%s/spans=%d", be.name, n), func(b *testing.B) {
				benchIngestChain(b, be.client, be.real, n)
			})
		}
	}
}

func benchIngestChain(b *testing.B, c *redis.Client, real bool, n int) {
	ctx := context.Background()
	buf := newTestBuffer(b, c, Config{})
	batch := chain(n, true)
	for i := range batch {
		batch[i].Payload = fmt.Appendf(nil, `{"project_id":1,"trace_id":%q,"span_id":%q,"parent_span_id":%q,"start_timestamp":1699999999.0,"end_timestamp":1700000000.0}`,
			batch[i].TraceID, batch[i].SpanID, batch[i].ParentSpanID)
	}
	var script time.Duration
	for b.Loop() {
		b.StopTimer()
		if err := c.FlushDB(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		if real {
			if err := c.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		ingest(b, buf, at(0), batch...)
		if real {
			b.StopTimer()
			_, usec := scriptStats(b, c)
			script += time.Duration(usec) * time.Microsecond
			b.StartTimer()
		}
	}
	b.StopTimer()
	if real {
		b.ReportMetric(float64(script.Milliseconds())/float64(b.N), "script-ms/op")
	}
	segs, got := flushed(b, buf, at(11))
	if len(got) != 1 || len(segs[segKeyA(batch[0].SpanID)].Spans) != n {
		b.Fatalf("flushed %d segments, want one segment of %d spans", len(got), n)
	}
	done(b, buf, segs)
	if keys, err := c.Keys(ctx, "*").Result(); err != nil || slices.ContainsFunc(keys, func(k string) bool { return !strings.HasPrefix(k, "span-buf:hrs:") }) {
		b.Fatalf("keys left after cleanup: %v (%v)", keys, err)
	}
}
