package segments

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/creekstream/creek/internal/redistest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
	"github.com/creekstream/creek/strategies"
)

// gate is a Redis hook that holds the pipelines writing a given span id until it is
// opened, and fails the first failures pipelines it sees.
type gate struct {
	spanID string
	open   chan struct{}

	mu       sync.Mutex
	failures int
}

func (*gate) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		g.mu.Lock()
		fail := g.failures > 0
		if fail {
			g.failures--
		}
		g.mu.Unlock()
		if fail {
			return errors.New("injected Redis failure")
		}
		if g.spanID != "" && slices.ContainsFunc(cmds, func(c redis.Cmder) bool {
			return slices.Contains(c.Args(), any(g.spanID))
		}) {
			select {
			case <-g.open:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return next(ctx, cmds)
	}
}

// ingestRig is an ingester over a real or mini Redis whose next step records what
// it is given.
type ingestRig struct {
	in      *ingester
	buf     *store.Buffer
	clock   *kafkaClock
	out     *[]processor.Message[int]
	offsets map[int32]int64
}

func newIngestRig(t *testing.T, client redis.UniversalClient, concurrency int) *ingestRig {
	t.Helper()
	f, err := NewFactory(FactoryConfig{Redis: client, Flusher: FlusherConfig{Topic: "segments", Producer: nopProducer{}}})
	if err != nil {
		t.Fatalf("NewFactory: %v", err)
	}
	var out []processor.Message[int]
	rec := strategies.NewRunTask(func(_ context.Context, m processor.Message[int]) (int, error) {
		out = append(out, m)
		return m.Payload, nil
	}, processor.Strategy[int](strategies.NewNoop[int]()))
	clock := newKafkaClock(0)
	in := newIngester(f.buf, clock, rec, nil, concurrency, f.cfg.Flusher.RedisTimeout, f.log, safeMetrics{m: f.m, log: f.log})
	r := &ingestRig{in: in, buf: f.buf, clock: clock, out: &out, offsets: make(map[int32]int64)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.in.Join(ctx); err != nil {
			t.Errorf("Join: %v", err)
		}
	})
	return r
}

type nopProducer struct{}

func (nopProducer) Produce(context.Context, string, processor.KafkaPayload) *processor.Delivery {
	d := processor.NewDelivery()
	d.Resolve(processor.Position{}, nil)
	return d
}

// submit offers a batch of spans of partition 0 read at ts, held in the clock as
// decode holds them.
func (r *ingestRig) submit(t *testing.T, ts time.Time, spans ...store.Span) {
	t.Helper()
	batch := make([]processor.Message[store.Span], len(spans))
	for i, s := range spans {
		p := processor.Partition{Topic: "spans", Index: s.Partition}
		batch[i] = processor.NewBrokerMessage(s, p, r.offsets[s.Partition], ts)
		r.offsets[s.Partition]++
		r.clock.hold(s.Partition, ts)
	}
	msg := processor.NewMessage(batch, batch[len(batch)-1].Committable, ts)
	if err := r.in.Submit(msg); err != nil {
		t.Fatalf("Submit: %v", err)
	}
}

// forwarded polls until n batches have been forwarded, failing the test after a
// while.
func (r *ingestRig) forwarded(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(*r.out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d batches forwarded within 5s, want %d", len(*r.out), n)
		}
		if err := r.in.Poll(); err != nil {
			t.Fatalf("Poll: %v", err)
		}
		time.Sleep(time.Millisecond) // polling, as the processor's loop does
	}
}

// A batch that reaches Redis before an earlier one waits for it: it is not
// forwarded (committed) first, and its partition's clock stays at the earlier
// batch's spans, which are not in Redis yet.
func TestIngesterForwardsInOrderAndHoldsTheClock(t *testing.T) {
	client := miniClient(t)
	g := &gate{spanID: id("a"), open: make(chan struct{})}
	client.AddHook(g)
	r := newIngestRig(t, client, 2)

	early, late := time.Now().Add(-time.Hour), time.Now().Add(-time.Minute)
	r.submit(t, early, span(t, "a", "", 0))
	r.submit(t, late, span(t, "b", "", 0))
	// The second batch's write goes through; wait until it is in Redis.
	waitKey(t, client, "span-buf:mk:{1:"+traceA+"}:"+id("b"))
	for range 10 {
		if err := r.in.Poll(); err != nil {
			t.Fatalf("Poll: %v", err)
		}
	}
	if len(*r.out) != 0 {
		t.Fatalf("%d batches forwarded while the first is not in Redis, want 0", len(*r.out))
	}
	if now := r.clock.Now(0); now.After(early) {
		t.Fatalf("partition 0's clock is at %v while a span read at %v is not in Redis", now, early)
	}
	close(g.open)
	r.forwarded(t, 2)
	if got := []int64{next(t, (*r.out)[0]), next(t, (*r.out)[1])}; !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("forwarded offsets %v, want [1 2] in order", got)
	}
	if now := r.clock.Now(0); now.Before(late) {
		t.Fatalf("partition 0's clock is at %v after both batches are in, want at least %v", now, late)
	}
}

// A batch whose write fails is written again, keeps its place in the order, and
// only then is forwarded.
func TestIngesterRetriesAFailedBatch(t *testing.T) {
	client := miniClient(t)
	g := &gate{failures: 2}
	client.AddHook(g)
	r := newIngestRig(t, client, 2)
	r.submit(t, time.Now(), span(t, "a", "", 0))
	r.submit(t, time.Now(), span(t, "b", "a", 0))
	r.forwarded(t, 2)
	if got := []int64{next(t, (*r.out)[0]), next(t, (*r.out)[1])}; !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("forwarded offsets %v, want [1 2] in order", got)
	}
	segs, _, err := r.buf.Flush(bg, []int32{0}, 1, store.At(time.Now().Add(time.Minute)))
	if err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := summarize(t, segs); fmt.Sprint(got) != fmt.Sprint(map[string]string{segKeyA(id("a")): "ab"}) {
		t.Fatalf("flushed %v after the retries, want segment a with a and b", got)
	}
}

// With concurrency 1 a second batch waits (Submit rejects) until the first is
// forwarded.
func TestIngesterBoundsBatchesInFlight(t *testing.T) {
	client := miniClient(t)
	g := &gate{spanID: id("a"), open: make(chan struct{})}
	client.AddHook(g)
	r := newIngestRig(t, client, 1)
	r.submit(t, time.Now(), span(t, "a", "", 0))
	p := processor.Partition{Topic: "spans", Index: 0}
	second := []processor.Message[store.Span]{processor.NewBrokerMessage(span(t, "b", "", 0), p, 1, time.Now())}
	if err := r.in.Submit(processor.NewMessage(second, second[0].Committable, time.Now())); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit with one batch in flight and concurrency 1: %v, want ErrMessageRejected", err)
	}
	close(g.open)
	r.forwarded(t, 1)
}

func TestFactoryIngestConcurrencyValidation(t *testing.T) {
	_, err := NewFactory(FactoryConfig{Redis: redistest.NotUsed(), Flusher: FlusherConfig{Topic: "s", Producer: nopProducer{}}, IngestConcurrency: -1})
	if err == nil || !strings.Contains(err.Error(), "IngestConcurrency") {
		t.Fatalf("NewFactory with IngestConcurrency -1: %v, want an error naming IngestConcurrency", err)
	}
}

func next(t *testing.T, m processor.Message[int]) int64 {
	t.Helper()
	_, off, ok := m.Committable.Single()
	if !ok {
		t.Fatalf("committable %s is not of one partition", m.Committable)
	}
	return off
}

// waitKey waits until key exists in Redis.
func waitKey(t *testing.T, c redis.UniversalClient, key string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Exists(bg, key).Val() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("key %s not in Redis within 5s", key)
		}
		time.Sleep(time.Millisecond) // no signal exists for a key written by another goroutine
	}
}

// miniClient returns a client of a fresh miniredis: the ingester's tests are about
// the step, not the store.
func miniClient(t *testing.T) *redis.Client {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}
