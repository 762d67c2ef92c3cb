// Package spanbuffere2e measures the span buffer end to end on a real Kafka broker
// and a real redis-server: spans/s from the input topic to flushed segments, the CPU
// each side spends per span, and the flush delay (segment deadline to the segment's
// produce timestamp).
//
//	source scripts/.run/kafka.env; source scripts/.run/redis.env
//	go test -run '^$' -bench . -benchtime 200000x ./bench/spanbuffer-e2e/
package spanbuffere2e

import (
	"bufio"
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/segments"
)

const (
	partitions   = 8
	spansPerTrac = 5
	rootTimeout  = time.Second
	produceRate  = 40000 // spans/s offered; the figure measured is what comes out
)

// BenchmarkSpanBufferEndToEnd produces b.N spans (traces of five) at produceRate and
// runs the ready-made consumer until every span is out.
func BenchmarkSpanBufferEndToEnd(b *testing.B) {
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

	traces := max(b.N/spansPerTrac, 1)
	total := traces * spansPerTrac
	c, err := segments.NewConsumer(segments.ConsumerConfig{
		Brokers: env.Brokers, Group: env.Group(), InputTopic: in, OutputTopic: out,
		Redis:     rdb,
		Buffer:    segments.Config{RootTimeout: rootTimeout, Timeout: 5 * time.Second},
		Flusher:   segments.FlusherConfig{IdleInterval: 100 * time.Millisecond},
		BatchSize: 1000, BatchTime: 50 * time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-runErr; err != nil {
			b.Error(err)
		}
	}()

	redisBefore := redisCPU(b, rdb)
	goBefore := processCPU()
	b.ResetTimer()
	start := time.Now()

	// lastSpan holds each trace's latest input timestamp: its segment's deadline is
	// that plus rootTimeout.
	var mu sync.Mutex
	lastSpan := make(map[string]time.Time, traces)
	prodErr := make(chan error, 1)
	go func() { prodErr <- produce(runCtx, env.Client, in, traces, &mu, lastSpan) }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...), kgo.ConsumeTopics(out), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	var delays []time.Duration
	seen := 0
	for seen < total {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			b.Fatalf("only %d of %d spans out: %v", seen, total, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n := strings.Count(string(r.Value), `"span_id"`)
			seen += n
			trace := traceOf(r.Value)
			mu.Lock()
			last := lastSpan[trace]
			mu.Unlock()
			delays = append(delays, r.Timestamp.Sub(last.Add(rootTimeout)))
		})
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if err := <-prodErr; err != nil {
		b.Fatal(err)
	}
	redisUsed := redisCPU(b, rdb) - redisBefore
	goUsed := processCPU() - goBefore

	slices.Sort(delays)
	pct := func(p float64) time.Duration { return delays[int(p*float64(len(delays)-1))] }
	b.ReportMetric(float64(total)/elapsed.Seconds(), "spans/s")
	b.ReportMetric(float64(redisUsed.Microseconds())/float64(total), "redis-cpu-us/span")
	b.ReportMetric(float64(goUsed.Microseconds())/float64(total), "go-cpu-us/span")
	b.ReportMetric(redisUsed.Seconds()/elapsed.Seconds(), "redis-cores")
	b.ReportMetric(goUsed.Seconds()/elapsed.Seconds(), "go-cores")
	b.ReportMetric(float64(pct(0.5).Milliseconds()), "flush-delay-p50-ms")
	b.ReportMetric(float64(pct(0.99).Milliseconds()), "flush-delay-p99-ms")
	b.ReportMetric(0, "ns/op")
}

func produce(ctx context.Context, c *kafkatest.Client, topic string, traces int, mu *sync.Mutex, last map[string]time.Time) error {
	const tick = 50 * time.Millisecond
	per := max(produceRate*int(tick/time.Millisecond)/1000/spansPerTrac, 1) // traces per tick
	t := time.NewTicker(tick)
	defer t.Stop()
	for tr := 0; tr < traces; tr += per {
		var recs []*kgo.Record
		now := time.Now()
		for i := tr; i < min(tr+per, traces); i++ {
			trace := fmt.Sprintf("%032x", i+1)
			root := fmt.Sprintf("%016x", i*8+1)
			p := partitionOf(trace)
			for s := range spansPerTrac {
				parent := `"` + root + `"`
				id := fmt.Sprintf("%016x", i*8+1+s)
				if s == 0 {
					parent = "null"
				}
				v := fmt.Sprintf(`{"project_id":1,"trace_id":"%s","span_id":"%s","parent_span_id":%s,"start_timestamp":1700000000.0,"end_timestamp":1700000001.0,"description":"GET /api/items"}`, trace, id, parent)
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(v), Timestamp: now})
			}
			mu.Lock()
			last[trace] = now
			mu.Unlock()
		}
		if err := c.Produce(ctx, recs...); err != nil {
			return err
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
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

// redisCPU returns redis-server's user+system CPU time (INFO cpu).
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatalf("INFO cpu: %v", err)
	}
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return time.Duration(sum * float64(time.Second))
}

// processCPU returns this process's user+system CPU time: the consumer, plus the
// benchmark's producer and reader.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
