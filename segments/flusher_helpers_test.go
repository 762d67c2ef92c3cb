package segments

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
	"github.com/creekstream/creek/strategies"
)

// flusherRedis returns a Redis for a flusher test: a real one (database 10, emptied)
// when CREEK_REDIS_ADDR is set, else miniredis. With CREEK_REQUIRE_REAL=1 a missing
// real one fails the test. mini is nil for a real Redis.
func flusherRedis(t *testing.T) (redis.UniversalClient, *miniredis.Miniredis) {
	t.Helper()
	if addr := os.Getenv("CREEK_REDIS_ADDR"); addr != "" {
		c := redis.NewClient(&redis.Options{Addr: addr, DB: 10})
		t.Cleanup(func() { _ = c.Close() })
		if err := c.FlushDB(context.Background()).Err(); err != nil {
			t.Fatalf("FLUSHDB on %s: %v", addr, err)
		}
		return c, nil
	}
	if os.Getenv("CREEK_REQUIRE_REAL") == "1" {
		t.Fatal("CREEK_REQUIRE_REAL=1 but CREEK_REDIS_ADDR is not set; run scripts/redis-start and source scripts/.run/redis.env")
	}
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c, m
}

// fastConfig is a FlusherConfig with supervision timings short enough for tests.
func fastConfig(p Producer) FlusherConfig {
	return FlusherConfig{
		Topic:          "segments",
		Producer:       p,
		MaxUnhealthy:   300 * time.Millisecond,
		StartupTimeout: 2 * time.Second,
		IdleInterval:   5 * time.Millisecond,
		CheckInterval:  5 * time.Millisecond,
		RedisTimeout:   2 * time.Second,
		ProduceTimeout: 2 * time.Second,
		StopTimeout:    2 * time.Second,
	}
}

// rig is a flusher under test with what it writes to.
type rig struct {
	buf   *store.Buffer
	clock *kafkaClock
	fl    *flusher
	logs  *observer.ObservedLogs
}

func newRig(t *testing.T, client redis.UniversalClient, bufCfg store.Config, cfg FlusherConfig) *rig {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	cfg.Logger = zap.New(core)
	buf, err := store.New(client, bufCfg)
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	cfg, err = cfg.withDefaults()
	if err != nil {
		t.Fatalf("FlusherConfig: %v", err)
	}
	clock := newKafkaClock(0)
	return &rig{buf: buf, clock: clock, fl: newFlusher(buf, clock, strategies.NewNoop[int](), nil, cfg), logs: logs}
}

// startWait starts the flusher on shards and waits until it accepts messages (every
// worker has reported) or fails. A failure is returned after the flusher was
// terminated, as the processor terminates a chain whose Poll fails.
func (r *rig) startWait(t *testing.T, shards ...int32) error {
	t.Helper()
	if err := r.fl.start(shards); err != nil {
		return err
	}
	var err error
	waitFor(t, "the flusher to start or fail", waitLong, func() bool {
		err = r.fl.Poll()
		return err != nil || r.fl.ready.Load()
	})
	if err != nil {
		r.fl.Terminate()
	}
	return err
}

// start starts the flusher on shards, waits for its workers and joins it when the
// test ends.
func (r *rig) start(t *testing.T, shards ...int32) {
	t.Helper()
	if err := r.startWait(t, shards...); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := r.fl.Join(context.Background()); err != nil {
			t.Errorf("Join: %v", err)
		}
	})
}

// count returns how many log entries have this message.
func (r *rig) count(msg string) int { return r.logs.FilterMessage(msg).Len() }

// spanJSON is a valid span payload.
func spanJSON(trace, span, parent string) []byte {
	p := "null"
	if parent != "" {
		p = `"` + parent + `"`
	}
	return []byte(fmt.Sprintf(`{"project_id":1,"trace_id":%q,"span_id":%q,"parent_span_id":%s,"start_timestamp":1.0,"end_timestamp":2.0}`, trace, span, p))
}

// hexID returns a 16-hex span id or, with width 32, a trace id, for n.
func hexID(n, width int) string { return fmt.Sprintf("%0*x", width, n) }

// ingestRoot writes one root span of its own trace into partition's queue at time at.
func ingestRoot(t *testing.T, buf *store.Buffer, partition int32, n int, at time.Time) {
	t.Helper()
	s, err := store.Decode(spanJSON(hexID(n, 32), hexID(n, 16), ""), partition)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if _, err := buf.Ingest(context.Background(), []store.Span{s}, store.At(at)); err != nil {
		t.Fatalf("Ingest: %v", err)
	}
}

// producer is a Producer for tests. behave decides each call's outcome;
// nil acknowledges at once. It records every acknowledged message.
type producer struct {
	mu     sync.Mutex
	calls  int
	acked  [][]byte
	behave func(call int, ctx context.Context, d *processor.Delivery)
	// ackedCh receives a value for every acknowledged message.
	ackedCh chan []byte
}

func newProducer(behave func(call int, ctx context.Context, d *processor.Delivery)) *producer {
	return &producer{behave: behave, ackedCh: make(chan []byte, 10000)}
}

func (p *producer) Produce(ctx context.Context, topic string, payload processor.KafkaPayload) *processor.Delivery {
	p.mu.Lock()
	p.calls++
	call := p.calls
	p.mu.Unlock()
	d := processor.NewDelivery()
	inner := processor.NewDelivery()
	go func() {
		<-inner.Done()
		if _, err := inner.Result(); err == nil {
			p.mu.Lock()
			p.acked = append(p.acked, payload.Value)
			p.mu.Unlock()
			p.ackedCh <- payload.Value
		}
		d.Resolve(inner.Result())
	}()
	if p.behave == nil {
		inner.Resolve(processor.Position{}, nil)
	} else {
		p.behave(call, ctx, inner)
	}
	return d
}

// wait returns the next acknowledged message, failing the test after timeout.
func (p *producer) wait(t *testing.T, what string, timeout time.Duration) []byte {
	t.Helper()
	select {
	case v := <-p.ackedCh:
		return v
	case <-time.After(timeout):
		t.Fatalf("no acknowledged message within %v: waited for %s", timeout, what)
		return nil
	}
}

var errBroker = errors.New("broker says no")

// waitFor calls cond every few milliseconds until it holds, failing the test with
// what after timeout. It is for conditions no channel signals.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

// waitMetric waits until the recorder satisfies cond.
func waitMetric(t *testing.T, rec *metricstest.Recorder, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := rec.Wait(ctx, cond); err != nil {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// tagKeys records the tag keys used with every metric name and can panic for one
// shard, to show that a failing backend does not stop the others.
type tagKeys struct {
	mu      sync.Mutex
	keys    map[string]bool
	panicOn string // shard tag value whose metrics panic
}

func (m *tagKeys) note(tags []metrics.Tag) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys == nil {
		m.keys = map[string]bool{}
	}
	for _, tg := range tags {
		m.keys[tg.Key] = true
		if tg.Key == "shard" && tg.Value == m.panicOn {
			panic("metrics backend broken for shard " + tg.Value)
		}
	}
}

func (m *tagKeys) Increment(_ string, _ int64, tags ...metrics.Tag)      { m.note(tags) }
func (m *tagKeys) Gauge(_ string, _ float64, tags ...metrics.Tag)        { m.note(tags) }
func (m *tagKeys) Timing(_ string, _ time.Duration, tags ...metrics.Tag) { m.note(tags) }

func (m *tagKeys) shardLike() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.keys {
		if strings.Contains(strings.ToLower(k), "shard") || strings.Contains(strings.ToLower(k), "partition") {
			out = append(out, k)
		}
	}
	return out
}
