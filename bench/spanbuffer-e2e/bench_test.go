// Package spanbuffere2e measures the span buffer's maximum throughput end to end on a
// real Kafka broker and a real redis-server.
//
// It first produces a backlog of b.N spans (traces of five, over eight partitions) to
// the input topic, then starts the ready-made consumer and times it until every span
// has been flushed in its segment and acknowledged by Kafka. While it runs nothing
// else runs in the process, so the process's CPU time (getrusage) is the consumer's;
// Redis's is the INFO cpu delta, and the machine's busy time (/proc/stat) shows what
// the broker and everything else took. The output topic is read only afterwards, for the
// flush delay: how far past its segment's deadline, on its partition's own Kafka
// clock, each segment was produced.
//
// It logs, from INFO commandstats, where Redis's time went, command by command
// (commands run by a script are counted twice: on their own and in the script's
// EVALSHA). With CREEK_E2E_BREAKDOWN=1 it also logs every command's server time
// from SLOWLOG, where each Lua script has a line of its own (its commands are
// logged too); the logging costs Redis time, so take CPU figures from other runs.
// CREEK_E2E_MAX_FLUSH_LAG sets the flusher's MaxFlushLag (a Go duration; negative
// turns it off; unset keeps the default).
//
//	source scripts/.run/kafka.env; source scripts/.run/redis.env
//	go test -run '^$' -bench . -benchtime 200000x ./bench/spanbuffer-e2e/
package spanbuffere2e

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/internal/cpustat"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/segments"
	"github.com/creekstream/creek/segments/store"
)

const (
	partitions    = 8
	spansPerTrace = 5
	rootTimeout   = 200 * time.Millisecond
)

// BenchmarkSpanBufferBacklog runs the backlog once per commit mode: behind the flush
// (the default) and as soon as spans are in Redis (the old mode), side by side.
// Besides the throughput it samples, every 100 ms, how many ingested spans the
// group has not committed: what a consumer killed at that moment would have read
// again, on top of what it held in memory.
func BenchmarkSpanBufferBacklog(b *testing.B) {
	for _, mode := range []struct {
		name string
		mode segments.CommitMode
	}{{"commit=after-flush", segments.CommitAfterFlush}, {"commit=after-ingest", segments.CommitAfterIngest}} {
		b.Run(mode.name, func(b *testing.B) { runBacklog(b, mode.mode) })
	}
}

func runBacklog(b *testing.B, mode segments.CommitMode) {
	brokers, redisAddr := os.Getenv(kafkatest.EnvBrokers), os.Getenv("CREEK_REDIS_ADDR")
	if brokers == "" || redisAddr == "" {
		b.Skip("needs CREEK_KAFKA_BROKERS and CREEK_REDIS_ADDR: run scripts/kafka-start and scripts/redis-start, source scripts/.run/*.env")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env := kafkatest.New(b)
	in, out := env.Topic(partitions), env.Topic(1)
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, DB: 11})
	defer func() { _ = rdb.Close() }()
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		b.Fatal(err)
	}

	traces := max(b.N/spansPerTrace, 1)
	total := traces * spansPerTrace
	deadline, err := produceBacklog(ctx, env.Client, in, traces)
	if err != nil {
		b.Fatal(err)
	}

	m := newProgress(total)
	group := env.Group()
	c, err := segments.NewConsumer(segments.ConsumerConfig{
		Brokers: env.Brokers, Group: group, InputTopic: in, OutputTopic: out,
		Redis:     rdb,
		Buffer:    store.Config{RootTimeout: rootTimeout, Timeout: 5 * time.Second},
		Flusher:   segments.FlusherConfig{IdleInterval: 50 * time.Millisecond, MaxFlushLag: maxFlushLag(b)},
		BatchSize: 1000, BatchTime: 50 * time.Millisecond,
		CommitMode: mode,
		Metrics:    m,
	})
	if err != nil {
		b.Fatal(err)
	}

	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	var slow *slowlog
	if os.Getenv("CREEK_E2E_BREAKDOWN") == "1" {
		slow = startSlowlog(ctx, b, rdb)
	}
	redisBefore := cpustat.Redis(ctx, b, rdb)
	cpuBefore := cpustat.Self(b)
	busyBefore := cpustat.Machine(b)
	b.ResetTimer()
	start := time.Now()
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()
	behind := sampleUncommitted(runCtx, b, env.Brokers, group, m)
	select {
	case <-m.done:
	case err := <-runErr:
		b.Fatalf("consumer stopped with %d of %d spans acknowledged: %v", m.acked(), total, err)
	case <-ctx.Done():
		b.Fatalf("only %d of %d spans acknowledged within the benchmark's deadline", m.acked(), total)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	consumerCPU := cpustat.Self(b) - cpuBefore
	redisUsed := cpustat.Redis(ctx, b, rdb) - redisBefore
	busy := cpustat.Machine(b) - busyBefore
	logCommandStats(b, rdb, total)
	if slow != nil {
		slow.stop(b, total)
	}
	stop()
	if err := <-runErr; err != nil {
		b.Error(err)
	}
	lag := <-behind

	delays, spans := flushDelays(ctx, b, env.Client, out, deadline, m)
	if spans < total {
		b.Fatalf("the output topic holds %d spans, want %d", spans, total)
	}
	slices.Sort(delays)
	pct := func(p float64) time.Duration { return delays[int(p*float64(len(delays)-1))] }
	b.ReportMetric(float64(total)/elapsed.Seconds(), "spans/s")
	b.ReportMetric(float64(total)/m.ingestedAt().Sub(start).Seconds(), "ingest-spans/s")
	b.ReportMetric(float64(redisUsed.Microseconds())/float64(total), "redis-cpu-us/span")
	b.ReportMetric(float64(consumerCPU.Microseconds())/float64(total), "go-cpu-us/span")
	b.ReportMetric(consumerCPU.Seconds()/redisUsed.Seconds(), "go/redis-cpu")
	b.ReportMetric(redisUsed.Seconds()/elapsed.Seconds(), "redis-cores")
	b.ReportMetric(consumerCPU.Seconds()/elapsed.Seconds(), "go-cores")
	b.ReportMetric(busy.Seconds()/elapsed.Seconds(), "machine-busy-cores")
	b.ReportMetric(float64(pct(0.5).Milliseconds()), "flush-delay-p50-ms")
	b.ReportMetric(float64(pct(0.99).Milliseconds()), "flush-delay-p99-ms")
	b.ReportMetric(float64(lag.max), "uncommitted-max-spans")
	b.ReportMetric(lag.mean(), "uncommitted-mean-spans")
	b.ReportMetric(float64(lag.max)/(float64(total)/elapsed.Seconds()), "uncommitted-max-s")
	b.ReportMetric(0, "ns/op")
}

// maxFlushLag is FlusherConfig.MaxFlushLag from CREEK_E2E_MAX_FLUSH_LAG (a Go
// duration; negative turns it off), or 0 for the default.
func maxFlushLag(b *testing.B) time.Duration {
	v := os.Getenv("CREEK_E2E_MAX_FLUSH_LAG")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		b.Fatalf("CREEK_E2E_MAX_FLUSH_LAG=%q: %v", v, err)
	}
	return d
}

// uncommitted is what sampleUncommitted saw.
type uncommitted struct {
	max, sum, samples int64
}

func (u uncommitted) mean() float64 {
	if u.samples == 0 {
		return 0
	}
	return float64(u.sum) / float64(u.samples)
}

// sampleUncommitted samples, every 100 ms until ctx is done, the spans ingested but
// not committed by the group (the input topic's offsets start at 0, so the
// committed offsets add up to the spans committed). The result comes on the
// channel once ctx is done.
func sampleUncommitted(ctx context.Context, b *testing.B, brokers []string, group string, m *progress) <-chan uncommitted {
	out := make(chan uncommitted, 1)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	adm := kadm.NewClient(cl)
	go func() {
		defer cl.Close()
		var u uncommitted
		defer func() { out <- u }()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			ingested := m.ingestedCount()
			offsets, err := adm.FetchOffsets(ctx, group)
			if err != nil {
				continue // the run is ending, or the broker is busy: skip the sample
			}
			var committed int64
			offsets.Each(func(o kadm.OffsetResponse) { committed += max(o.At, 0) }) // -1: none committed
			lag := max(ingested-committed, 0)
			u.max = max(u.max, lag)
			u.sum += lag
			u.samples++
		}
	}()
	return out
}

// produceBacklog writes traces of spansPerTrace spans, each trace in one partition,
// and returns each trace's segment deadline in Kafka time: its spans' timestamp plus
// rootTimeout.
func produceBacklog(ctx context.Context, c *kafkatest.Client, topic string, traces int) (map[string]time.Time, error) {
	deadline := make(map[string]time.Time, traces)
	const chunk = 2000 // traces per produce call
	for tr := 0; tr < traces; tr += chunk {
		var recs []*kgo.Record
		now := time.Now()
		for i := tr; i < min(tr+chunk, traces); i++ {
			trace := fmt.Sprintf("%032x", i+1)
			root := fmt.Sprintf("%016x", i*8+1)
			p := partitionOf(trace)
			for s := range spansPerTrace {
				parent := `"` + root + `"`
				if s == 0 {
					parent = "null"
				}
				v := fmt.Sprintf(`{"project_id":1,"trace_id":"%s","span_id":"%016x","parent_span_id":%s,"start_timestamp":1700000000.0,"end_timestamp":1700000001.0,"description":"GET /api/items"}`,
					trace, i*8+1+s, parent)
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(v), Timestamp: now})
			}
			deadline[trace] = now.Add(rootTimeout)
		}
		if err := c.Produce(ctx, recs...); err != nil {
			return nil, err
		}
	}
	return deadline, nil
}

// flushDelays reads every segment message and returns, per segment, how far past its
// deadline its partition's clock was when the segment was produced, and the number
// of spans read. The clock at wall time w is w plus the drift the ingest step last
// reported for the partition before w.
func flushDelays(ctx context.Context, b *testing.B, c *kafkatest.Client, topic string, deadline map[string]time.Time, m *progress) ([]time.Duration, int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	segments := m.segments()
	var delays []time.Duration
	spans := 0
	for len(delays) < segments {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			b.Fatalf("read %d of %d segments back: %v", len(delays), segments, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			spans += strings.Count(string(r.Value), `"span_id"`)
			trace := traceOf(r.Value)
			clock := r.Timestamp.Add(m.driftAt(partitionOf(trace), r.Timestamp))
			delays = append(delays, clock.Sub(deadline[trace]))
		})
	}
	return delays, spans
}

// progress is the consumer's metrics backend: it counts ingested and acknowledged
// spans, closes done once every span is acknowledged, and keeps the drift each
// partition's clock was set to, with when. mu guards it all.
type progress struct {
	total int64
	done  chan struct{}

	mu             sync.Mutex
	ingested, ackd int64
	segs           int
	ingestedDone   time.Time
	drifts         map[int32][]drift
	closed         bool
}

type drift struct {
	at time.Time
	d  time.Duration
}

func newProgress(total int) *progress {
	return &progress{total: int64(total), done: make(chan struct{}), drifts: make(map[int32][]drift)}
}

func (p *progress) Increment(name string, v int64, _ ...metrics.Tag) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch name {
	case "spans.buffer.process_spans.count":
		p.ingested += v
		if p.ingested >= p.total && p.ingestedDone.IsZero() {
			p.ingestedDone = time.Now()
		}
	case "spans.buffer.flusher.segment_spans":
		p.ackd += v
		p.segs++
		if p.ackd >= p.total && !p.closed {
			p.closed = true
			close(p.done)
		}
	}
}

func (p *progress) Gauge(name string, v float64, tags ...metrics.Tag) {
	if name != "spans.buffer.flusher.drift" {
		return
	}
	for _, t := range tags {
		if t.Key != "shard" {
			continue
		}
		shard, err := strconv.Atoi(t.Value)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.drifts[int32(shard)] = append(p.drifts[int32(shard)], drift{time.Now(), time.Duration(v * float64(time.Second))})
		p.mu.Unlock()
	}
}

func (*progress) Timing(string, time.Duration, ...metrics.Tag) {}

func (p *progress) acked() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ackd
}

func (p *progress) ingestedCount() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ingested
}

func (p *progress) segments() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.segs
}

func (p *progress) ingestedAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ingestedDone
}

// driftAt returns the drift partition's clock had at wall time w.
func (p *progress) driftAt(partition int32, w time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	ds := p.drifts[partition]
	i, _ := slices.BinarySearchFunc(ds, w, func(d drift, w time.Time) int { return d.at.Compare(w) })
	if i == 0 {
		return 0
	}
	return ds[i-1].d
}

func partitionOf(trace string) int32 {
	h := fnv.New32a()
	h.Write([]byte(trace))
	return int32(h.Sum32() % partitions)
}

// traceOf returns the trace id of a segment message's first span.
func traceOf(v []byte) string {
	s := string(v)
	i := strings.Index(s, `"trace_id":"`)
	if i < 0 {
		return ""
	}
	s = s[i+len(`"trace_id":"`):]
	return s[:strings.IndexByte(s, '"')]
}
