package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// instrumentedProducer is a producer that counts its deliveries, as the Kafka
// producers do, with the metrics it was given through Instrument. It resolves every
// delivery at once, with fail's error.
type instrumentedProducer struct {
	fail error

	mu   sync.Mutex
	inst processor.Instruments
	n    int
}

func (p *instrumentedProducer) Instrument(inst processor.Instruments) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inst, p.n = p.inst.Or(inst), p.n+1
}

func (p *instrumentedProducer) Produce(_ context.Context, topic string, _ string) *processor.Delivery {
	p.mu.Lock()
	m := p.inst.Metrics
	p.mu.Unlock()
	status := "success"
	if p.fail != nil {
		status = "error"
	}
	if m != nil {
		m.Increment("producer.produce_status", 1, metrics.Tag{Key: "status", Value: status}, metrics.Tag{Key: "topic", Value: topic})
	}
	d := processor.NewDelivery()
	d.Resolve(processor.Position{Partition: processor.Partition{Topic: topic}}, p.fail)
	return d
}

func (p *instrumentedProducer) instrumented() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// gate rejects what it is given until open says otherwise, counting rejections.
type gate[T any] struct {
	next processor.Strategy[T]
	open func(rejected int) bool

	mu       sync.Mutex
	rejected int
}

func (g *gate[T]) Submit(m processor.Message[T]) error {
	g.mu.Lock()
	if !g.open(g.rejected) {
		g.rejected++
		g.mu.Unlock()
		return processor.ErrMessageRejected
	}
	g.mu.Unlock()
	return g.next.Submit(m)
}

func (g *gate[T]) rejections() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rejected
}

func (g *gate[T]) Poll() error                    { return g.next.Poll() }
func (g *gate[T]) Close()                         { g.next.Close() }
func (g *gate[T]) Join(ctx context.Context) error { return g.next.Join(ctx) }
func (g *gate[T]) Terminate()                     { g.next.Terminate() }

// through puts g into a pipeline.
func through[S, T any](st pipeline.Stage[S, T], g *gate[T]) pipeline.Stage[S, T] {
	return pipeline.Through(st, func(next processor.Strategy[T], _ []strategies.Option) (processor.Strategy[T], error) {
		g.next = next
		return g, nil
	})
}

// TestOneMetricOfEveryStepReachesTheProcessorsRecorder gives metrics to the
// processor only, and finds a metric of every step that records one.
func TestOneMetricOfEveryStepReachesTheProcessorsRecorder(t *testing.T) {
	rec := metricstest.NewRecorder()
	prod := &instrumentedProducer{}
	// Rejecting MapConcurrent's first result makes it count backpressure.
	rejectOnce := &gate[string]{open: func(rejected int) bool { return rejected > 0 }}
	// Map's next step rejects until Map has counted a rejection during Join, which
	// only happens once the processor is stopped.
	untilJoin := &gate[string]{open: func(int) bool { return rec.Counter("strategies.run_task.join.backpressure") > 0 }}

	st := pipeline.Filter(pipeline.From[string](), func(_ context.Context, s string) bool { return s != "x" })
	st = through(pipeline.MapConcurrent(st, upper, 2), rejectOnce)
	st = pipeline.Through(st, func(next processor.Strategy[string], opts []strategies.Option) (processor.Strategy[string], error) {
		same := func(_ context.Context, m processor.Message[string]) (string, error) { return m.Payload, nil }
		return strategies.NewRunTaskInBatches(same, strategies.ParallelBatchConfig{
			Concurrency: 1, MaxPendingBatches: 1, MaxBatchSize: 3, MaxBatchWait: 10 * time.Millisecond,
		}, next, opts...)
	})
	batches := pipeline.Batch(st, 3, time.Minute)
	joined := through(pipeline.Map(batches, func(_ context.Context, b []string) (string, error) { return strings.Join(b, ""), nil }), untilJoin)
	factory := pipeline.Commit(pipeline.Produce(joined, prod, "out"))

	// Should Map's metric never come, the join gives up in time for the
	// assertions below to say what is missing.
	cfg := processor.Config[string]{Metrics: rec, CommitPolicy: processor.ImmediateCommit(), JoinTimeout: 2 * time.Second}
	h := newStartedHarness(t, factory, cfg, "a", "x", "b", "c")
	h.WaitUntil("the batch held in front of the closed gate", func() bool { return untilJoin.rejections() > 0 })
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := h.Consumer.Committed(p0); got != 4 {
		t.Errorf("committed %d, want 4: the batch did not get through once the gate opened", got)
	}

	counters := []struct {
		step    string
		name    string
		tags    []metrics.Tag
		atLeast int64
	}{
		{"Filter", "strategies.filter.dropped_messages", nil, 1},
		{"MapConcurrent", "strategies.run_task_concurrently.backpressure", nil, 1},
		{"Map", "strategies.run_task.join.backpressure", nil, 1},
		{"Produce's producer", "producer.produce_status", []metrics.Tag{{Key: "status", Value: "success"}, {Key: "topic", Value: "out"}}, 1},
	}
	for _, c := range counters {
		if got := rec.Counter(c.name, c.tags...); got < c.atLeast {
			t.Errorf("%s: counter %s = %d, want at least %d", c.step, c.name, got, c.atLeast)
		}
	}
	if _, ok := rec.GaugeValue("strategies.run_task_concurrently.batch.size"); !ok {
		t.Error("Through (RunTaskInBatches given the step's options): no strategies.run_task_concurrently.batch.size")
	}
	timings := []struct{ step, name string }{
		{"Batch", "strategies.reduce.batch_time"},
		{"Commit", "consumer.latency"},
	}
	for _, tm := range timings {
		if len(rec.Timings(tm.name)) == 0 {
			t.Errorf("%s: no timing %s", tm.step, tm.name)
		}
	}
	if n := prod.instrumented(); n != 1 {
		t.Errorf("the producer was instrumented %d times, want once", n)
	}
}

func TestAStepGivenItsOwnMetricsKeepsThem(t *testing.T) {
	procRec, own := metricstest.NewRecorder(), metricstest.NewRecorder()
	st := pipeline.Filter(pipeline.From[string](), func(_ context.Context, s string) bool { return s != "x" }, strategies.WithMetrics(own))
	st = pipeline.Filter(st, func(_ context.Context, s string) bool { return s != "y" })
	runUntilCommitted(t, pipeline.Commit(st), processor.Config[string]{Metrics: procRec}, "x", "y", "a")
	const dropped = "strategies.filter.dropped_messages"
	if got := own.Counter(dropped); got != 1 {
		t.Errorf("the step's own recorder counted %d drops, want its 1", got)
	}
	if got := procRec.Counter(dropped); got != 1 {
		t.Errorf("the processor's recorder counted %d drops, want only the other step's 1", got)
	}
}

func TestTheProcessorsLoggerReachesTheSteps(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	prod := &instrumentedProducer{fail: errors.New("broker said no")}
	st := pipeline.Produce(pipeline.From[string](), prod, "out", strategies.WithFailedDeliveriesSkipped())
	runUntilCommitted(t, pipeline.Commit(st), processor.Config[string]{Logger: zap.New(core)}, "a")
	if n := logs.FilterMessage("delivery failed; message skipped").Len(); n != 1 {
		t.Errorf("the Produce step logged %d skipped deliveries to the processor's logger, want 1; logs: %v", n, logs.All())
	}
}
