package spanbufferscale

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"sort"
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
)

// EnvCluster names the Redis Cluster of scripts/redis-start, as host:port,...
const EnvCluster = "CREEK_REDIS_CLUSTER_ADDRS"

const (
	// partitions is the input topic's partition count: enough for three members
	// to get five or six each.
	partitions = 16
	// rootTimeout and segmentTimeout are the members' segment timeouts; with
	// batchSize they are the end-to-end benchmark's settings.
	rootTimeout    = 200 * time.Millisecond
	segmentTimeout = 5 * time.Second
	batchSize      = 1000
)

// Bounds of the waits on the services and the members.
const (
	// runTimeout bounds a whole run.
	runTimeout = 10 * time.Minute
	// joinTimeout bounds the wait for the group to be stable with every member.
	joinTimeout = 2 * time.Minute
	// stallTimeout fails a run in which no member reported progress for so long.
	stallTimeout = time.Minute
	// stopTimeout bounds a member's clean shutdown.
	stopTimeout = time.Minute
	// readTimeout bounds reading the output topic back.
	readTimeout = 2 * time.Minute
	// callTimeout bounds one call to Redis or the broker's admin API.
	callTimeout = 30 * time.Second
)

// BenchmarkScaleOut runs the span buffer as 1, 2 and 3 processes of one group on
// the Redis Cluster; b.N is the number of spans (rounded down to whole traces).
func BenchmarkScaleOut(b *testing.B) {
	for _, k := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("processes=%d", k), func(b *testing.B) { runScaleOut(b, k) })
	}
}

// services returns the real broker and Redis Cluster, or skips b (fails it with
// CREEK_REQUIRE_REAL=1).
func services(b *testing.B) (brokers []string, cluster []string) {
	b.Helper()
	brokers = kafkatest.RealBrokers()
	for _, a := range strings.Split(os.Getenv(EnvCluster), ",") {
		if a = strings.TrimSpace(a); a != "" {
			cluster = append(cluster, a)
		}
	}
	if len(brokers) == 0 || len(cluster) == 0 {
		msg := fmt.Sprintf("needs %s and %s: run scripts/kafka-start and scripts/redis-start, then source scripts/.run/kafka.env and scripts/.run/redis.env",
			kafkatest.EnvBrokers, EnvCluster)
		if os.Getenv(kafkatest.EnvRequireReal) == "1" {
			b.Fatal(msg)
		}
		b.Skip(msg)
	}
	return brokers, cluster
}

func runScaleOut(b *testing.B, k int) {
	brokers, cluster := services(b)
	bin := buildMember(b)
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()

	env := kafkatest.New(b)
	in, out, group := env.Topic(partitions), env.Topic(1), env.Group()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster})
	b.Cleanup(func() { _ = rdb.Close() })
	flushCluster(ctx, b, rdb)
	adm, closeAdm := admin(b, brokers)
	defer closeAdm()

	f := startFleet(b, bin, b.TempDir(), k,
		"-brokers", strings.Join(brokers, ","), "-cluster", strings.Join(cluster, ","),
		"-group", group, "-in", in, "-out-topic", out,
		"-root-timeout", rootTimeout.String(), "-segment-timeout", segmentTimeout.String(),
		"-batch-size", strconv.Itoa(batchSize))
	waitStable(ctx, b, adm, f, group, in, k)

	traces := max(b.N/spansPerTrace, 1)
	total := int64(traces * spansPerTrace)
	load := cpustat.LoadAvg(b)
	_, _, rebalancesBefore := f.totals()
	redisBefore := redisCPU(ctx, b, rdb)
	cpuBefore := f.cpu()
	busyBefore := cpustat.Machine(b)
	b.ResetTimer()
	start := time.Now()
	if err := produce(ctx, env.Client, in, traces); err != nil {
		b.Fatal(err)
	}
	produced := time.Since(start)
	ingestedAt := waitAcked(ctx, b, f, total)
	elapsed := time.Since(start)
	b.StopTimer()
	memberCPU := f.cpu() - cpuBefore
	busy := cpustat.Machine(b) - busyBefore
	redisAfter := redisCPU(ctx, b, rdb)
	_, _, rebalancesAfter := f.totals()
	loadEnd := cpustat.LoadAvg(b)

	var redisUsed, redisMax time.Duration
	var perMaster []string
	for addr, after := range redisAfter {
		d := after - redisBefore[addr]
		redisUsed += d
		redisMax = max(redisMax, d)
		perMaster = append(perMaster, fmt.Sprintf("%s %.2f cores", addr, d.Seconds()/elapsed.Seconds()))
	}
	sort.Strings(perMaster)
	var perMember []string
	for _, m := range f.members {
		a, i, _ := m.counts()
		perMember = append(perMember, fmt.Sprintf("%s acknowledged %d, ingested %d", m.name, a, i))
	}

	f.stop(stopTimeout)
	res := readBack(ctx, b, env.Client, brokers, out, traces)

	b.Logf("%d processes, %d spans (%d traces of %d) over %d partitions: produced in %v, all acknowledged after %v",
		k, total, traces, spansPerTrace, partitions, produced.Round(time.Millisecond), elapsed.Round(time.Millisecond))
	b.Logf("load average before %s, after %s", load, loadEnd)
	b.Logf("members: %s", strings.Join(perMember, "; "))
	b.Logf("Redis masters: %s", strings.Join(perMaster, "; "))
	b.Logf("check: %v", res)

	n := float64(total)
	b.ReportMetric(n/elapsed.Seconds(), "spans/s")
	b.ReportMetric(n/ingestedAt.Sub(start).Seconds(), "ingest-spans/s")
	b.ReportMetric(float64(memberCPU.Microseconds())/n, "go-cpu-us/span")
	b.ReportMetric(float64(redisUsed.Microseconds())/n, "redis-cpu-us/span")
	b.ReportMetric(memberCPU.Seconds()/elapsed.Seconds(), "go-cores")
	b.ReportMetric(redisUsed.Seconds()/elapsed.Seconds(), "redis-cores")
	b.ReportMetric(redisMax.Seconds()/elapsed.Seconds(), "redis-max-master-cores")
	b.ReportMetric(busy.Seconds()/elapsed.Seconds(), "machine-busy-cores")
	b.ReportMetric(float64(rebalancesAfter-rebalancesBefore), "rebalances")
	b.ReportMetric(float64(res.lost), "lost")
	b.ReportMetric(float64(res.duplicates), "duplicates")
	b.ReportMetric(float64(res.misplaced+res.mixed+res.foreign+res.undecodable), "misplaced")
	b.ReportMetric(float64(res.split), "split-traces")
	b.ReportMetric(0, "ns/op")
	if !res.ok() {
		b.Errorf("the output is wrong: %v; e.g. %s", res, res.example)
	}
}

// flushCluster empties every master of the Cluster.
func flushCluster(ctx context.Context, b *testing.B, rdb *redis.ClusterClient) {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		return n.FlushAll(ctx).Err()
	}); err != nil {
		b.Fatalf("FLUSHALL on the Redis Cluster: %v", err)
	}
}

// admin returns an admin client on brokers and a function that closes it.
func admin(b *testing.B, brokers []string) (*kadm.Client, func()) {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	return kadm.NewClient(cl), cl.Close
}

// waitStable waits until group is stable with k members that hold every
// partition of topic between them, while every member runs.
func waitStable(ctx context.Context, b *testing.B, adm *kadm.Client, f *fleet, group, topic string, k int) {
	b.Helper()
	deadline := time.Now().Add(joinTimeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "not described yet"
	for {
		f.checkRunning("while the group formed")
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		gs, err := adm.DescribeGroups(cctx, group)
		cancel()
		if err != nil {
			last = err.Error()
		} else if g, ok := gs[group]; !ok || g.Err != nil {
			last = fmt.Sprintf("not described (%v)", g.Err)
		} else {
			held := len(g.AssignedPartitions()[topic])
			if g.State == "Stable" && len(g.Members) == k && held == partitions {
				return
			}
			last = fmt.Sprintf("state %s, %d members, %d of %d partitions assigned", g.State, len(g.Members), held, partitions)
		}
		if time.Now().After(deadline) {
			b.Fatalf("group %s not stable with %d members within %v: %s", group, k, joinTimeout, last)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			b.Fatalf("group %s: %v; last seen: %s", group, ctx.Err(), last)
		}
	}
}

// produce writes traces traces of spansPerTrace spans to topic, each trace in
// one partition, 2000 traces a call.
func produce(ctx context.Context, c *kafkatest.Client, topic string, traces int) error {
	const chunk = 2000
	for first := 0; first < traces; first += chunk {
		recs := make([]*kgo.Record, 0, chunk*spansPerTrace)
		now := time.Now()
		for t := first; t < min(first+chunk, traces); t++ {
			p := partitionOf(traceID(t))
			for s := range spansPerTrace {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: spanValue(t, s), Timestamp: now})
			}
		}
		pctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := c.Produce(pctx, recs...)
		cancel()
		if err != nil {
			return fmt.Errorf("producing traces %d to %d: %w", first, first+len(recs)/spansPerTrace-1, err)
		}
	}
	return nil
}

// partitionOf is the partition of a trace: all its spans share one.
func partitionOf(trace string) int32 {
	h := fnv.New32a()
	h.Write([]byte(trace))
	return int32(h.Sum32() % partitions)
}

// waitAcked waits until the members have reported total spans acknowledged, and
// returns when they had reported total spans ingested. It fails the benchmark
// if a member exits, or none reports progress for stallTimeout.
func waitAcked(ctx context.Context, b *testing.B, f *fleet, total int64) (ingestedAt time.Time) {
	b.Helper()
	stall := time.NewTimer(stallTimeout)
	defer stall.Stop()
	var last int64
	for {
		f.checkRunning("while spans were consumed")
		acked, ingested, _ := f.totals()
		if ingested >= total && ingestedAt.IsZero() {
			ingestedAt = time.Now()
		}
		if acked >= total {
			return ingestedAt
		}
		if acked > last {
			last = acked
			stall.Reset(stallTimeout)
		}
		select {
		case <-f.changed:
		case <-stall.C:
			b.Fatalf("no span acknowledged for %v: %d of %d acknowledged, %d ingested", stallTimeout, acked, total, ingested)
		case <-ctx.Done():
			b.Fatalf("%d of %d spans acknowledged, %d ingested: %v", acked, total, ingested, ctx.Err())
		}
	}
}

// readBack reads topic from the start to its end and checks it against the
// traces produced.
func readBack(ctx context.Context, b *testing.B, c *kafkatest.Client, brokers []string, topic string, traces int) result {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	ends, err := c.EndOffsets(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	a := newAccounting(traces)
	next := make(map[int32]int64)
	behind := func() bool {
		for p, end := range ends {
			if next[p] < end {
				return true
			}
		}
		return false
	}
	for behind() {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			b.Fatalf("read %d segment messages of %s back, offsets %v of %v: %v", a.messages, topic, next, ends, err)
		}
		if err := fs.Err0(); err != nil {
			b.Fatalf("reading %s: %v", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				a.add(r.Value)
			}
			next[r.Partition] = r.Offset + 1
		})
	}
	return a.result()
}

// redisCPU returns each master's CPU time (INFO cpu), by address.
func redisCPU(ctx context.Context, b *testing.B, rdb *redis.ClusterClient) map[string]time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var mu sync.Mutex
	out := make(map[string]time.Duration)
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		d, err := cpustat.RedisErr(ctx, n)
		if err != nil {
			return err
		}
		mu.Lock()
		out[n.Options().Addr] = d
		mu.Unlock()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return out
}
