package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/creekstream/creek/internal/cpustat"
)

// BenchmarkProcessSpans ingests batches of 2000 spans into the real redis-server at
// CREEK_REDIS_ADDR (database 9, emptied first), with 1, 5, 20 and 100 spans per
// subsegment. Besides ns/op (one batch) it reports spans/s, the server time of the
// add script per call and per span (INFO commandstats, reset before each run), and
// the CPU time of the Go process and of redis-server per span.
func BenchmarkProcessSpans(b *testing.B) {
	addr := os.Getenv("CREEK_REDIS_ADDR")
	if addr == "" {
		b.Skip("CREEK_REDIS_ADDR not set; run scripts/redis-start and source scripts/.run/redis.env")
	}
	c := redis.NewClient(&redis.Options{Addr: addr, DB: realRedisDB})
	defer c.Close()
	for _, per := range []int{1, 5, 20, 100} {
		b.Run(fmt.Sprintf("spans_per_subsegment=%d", per), func(b *testing.B) {
			ctx := context.Background()
			if err := c.FlushDB(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			buf := newTestBuffer(b, c, Config{})
			batches := benchBatches(b.N, 2000, per)
			// One untimed batch loads the script.
			ingest(b, buf, at(0), benchBatches(1, 2000, per)[0]...)
			if err := c.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			cpu0, go0 := cpustat.Redis(context.Background(), b, c), cpustat.Self(b)
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				ingest(b, buf, at(0), batches[i]...)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			calls, usec := scriptStats(b, c)
			spans := float64(b.N * 2000)
			b.ReportMetric(spans/elapsed.Seconds(), "spans/s")
			b.ReportMetric(usec/calls, "script-us/call")
			b.ReportMetric(usec/spans, "script-us/span")
			b.ReportMetric(float64((cpustat.Redis(context.Background(), b, c)-cpu0).Microseconds())/spans, "redis-cpu-us/span")
			b.ReportMetric(float64((cpustat.Self(b)-go0).Microseconds())/spans, "go-cpu-us/span")
		})
	}
}

// benchBatches returns n batches of size spans, in subsegments of per spans: per
// children of a root that is not in the batch, one trace each, over 32 partitions.
func benchBatches(n, size, per int) [][]Span {
	out := make([][]Span, n)
	trace := 0
	for i := range out {
		batch := make([]Span, 0, size)
		for len(batch) < size {
			trace++
			tid := fmt.Sprintf("%032x", trace)
			parent := fmt.Sprintf("%016x", 1<<40+trace)
			for j := 0; j < per && len(batch) < size; j++ {
				sid := fmt.Sprintf("%016x", trace*1000+j)
				payload := fmt.Sprintf(`{"project_id":1,"organization_id":1,"trace_id":%q,"span_id":%q,"parent_span_id":%q,`+
					`"start_timestamp":1699999999.0,"end_timestamp":1700000000.0,"name":"db.query","op":"db",`+
					`"attributes":{"db.system":{"type":"string","value":"postgresql"},"sentry.environment":{"type":"string","value":"production"}}}`,
					tid, sid, parent)
				batch = append(batch, Span{ProjectID: 1, TraceID: tid, SpanID: sid, ParentSpanID: parent,
					Partition: int32(trace % 32), Payload: []byte(payload)})
			}
		}
		out[i] = batch
	}
	return out
}

// scriptStats returns the calls and microseconds of EVALSHA from INFO commandstats.
func scriptStats(b *testing.B, c *redis.Client) (calls, usec float64) {
	info := infoFields(b, c, "commandstats")
	for _, kv := range strings.Split(info["cmdstat_evalsha"], ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "calls":
			calls, _ = strconv.ParseFloat(v, 64)
		case "usec":
			usec, _ = strconv.ParseFloat(v, 64)
		}
	}
	if calls == 0 {
		b.Fatal("INFO commandstats shows no EVALSHA calls")
	}
	return calls, usec
}

func infoFields(b *testing.B, c *redis.Client, section string) map[string]string {
	s, err := c.Info(context.Background(), section).Result()
	if err != nil {
		b.Fatalf("INFO %s: %v", section, err)
	}
	out := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// BenchmarkFlush flushes segments of 5 spans from the real redis-server at
// CREEK_REDIS_ADDR (database 9, emptied first), as a flusher worker does: Flush
// (at most 500 segments), Messages for each, then Done. One op is one flush of
// 500 segments; the segments are ingested between ops, untimed. Besides ns/op it
// reports the Go allocations per span (Flush, Messages and Done) and redis-server's
// CPU time (INFO cpu) per span of the flush (load) and of Done.
func BenchmarkFlush(b *testing.B) {
	addr := os.Getenv("CREEK_REDIS_ADDR")
	if addr == "" {
		b.Skip("CREEK_REDIS_ADDR not set; run scripts/redis-start and source scripts/.run/redis.env")
	}
	c := redis.NewClient(&redis.Options{Addr: addr, DB: realRedisDB})
	defer c.Close()
	ctx := context.Background()
	if err := c.FlushDB(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	const segments, perSegment = 500, 5
	buf := newTestBuffer(b, c, Config{})
	var allocs, loadUsec, doneUsec float64
	var mem runtime.MemStats
	for i := range b.N {
		b.StopTimer()
		for _, batch := range flushBatches(i, segments, perSegment) {
			ingest(b, buf, at(0), batch...)
		}
		runtime.ReadMemStats(&mem)
		before := mem.Mallocs
		cpu0 := cpustat.Redis(context.Background(), b, c)
		b.StartTimer()

		segs, stats, err := buf.flushShards(at(20))
		if err != nil || stats.Segments != segments || stats.Spans != segments*perSegment {
			b.Fatalf("flush: %d segments, %d spans, %v; want %d and %d", stats.Segments, stats.Spans, err, segments, segments*perSegment)
		}
		b.StopTimer()
		cpu1 := cpustat.Redis(context.Background(), b, c)
		loadUsec += float64((cpu1 - cpu0).Microseconds())
		b.StartTimer()
		for _, seg := range segs {
			if _, err := buf.Messages(seg); err != nil {
				b.Fatal(err)
			}
		}
		if err := buf.Done(ctx, segs); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.ReadMemStats(&mem)
		allocs += float64(mem.Mallocs - before)
		doneUsec += float64((cpustat.Redis(context.Background(), b, c) - cpu1).Microseconds())
		b.StartTimer()
	}
	spans := float64(b.N * segments * perSegment)
	b.ReportMetric(allocs/spans, "allocs/span")
	b.ReportMetric(loadUsec/spans, "redis-load-us/span")
	b.ReportMetric(doneUsec/spans, "redis-done-us/span")
	// The marker and every segment's has-root flag stay.
	if n, err := c.DBSize(ctx).Result(); err != nil || n != int64(1+b.N*segments) {
		b.Fatalf("Redis holds %d keys after the flushes (%v), want %d: the marker and the has-root flags", n, err, 1+b.N*segments)
	}
}

// flushBatches returns batch i of the flush benchmark: segments traces, each a root
// and perSegment-1 children, in batches of 1000 spans over 32 partitions.
func flushBatches(i, segments, perSegment int) [][]Span {
	var out [][]Span
	var batch []Span
	for t := range segments {
		tid := fmt.Sprintf("%016x%016x", i+1, t+1)
		root := fmt.Sprintf("%016x", 1)
		for j := range perSegment {
			sid, parent := fmt.Sprintf("%016x", j+1), `"`+root+`"`
			if j == 0 {
				parent = "null"
			}
			payload := fmt.Sprintf(`{"project_id":1,"organization_id":1,"trace_id":%q,"span_id":%q,"parent_span_id":%s,`+
				`"start_timestamp":1699999999.0,"end_timestamp":1700000000.0,"name":"db.query","op":"db",`+
				`"attributes":{"db.system":{"type":"string","value":"postgresql"},"sentry.environment":{"type":"string","value":"production"}}}`,
				tid, sid, parent)
			s, err := Decode([]byte(payload), int32(t%32))
			if err != nil {
				panic(err)
			}
			batch = append(batch, s)
			if len(batch) == 1000 {
				out, batch = append(out, batch), nil
			}
		}
	}
	if len(batch) > 0 {
		out = append(out, batch)
	}
	return out
}
