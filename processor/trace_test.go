package processor_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
	"github.com/creekstream/creek/strategies"
)

// The trace of the tests: traceparent 00-<traceID>-<spanID>-01.
const (
	traceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	spanID      = "00f067aa0ba902b7"
	traceparent = "00-" + traceID + "-" + spanID + "-01"
)

// tracedPayload is a Kafka payload with a traceparent header among others.
func tracedPayload(value string) processor.KafkaPayload {
	return processor.KafkaPayload{Value: []byte(value), Headers: []processor.Header{
		{Key: "a", Value: []byte("1")},
		{Key: "traceparent", Value: []byte(traceparent)},
	}}
}

// spanContext is the span context traceparent names, as a propagator reads it.
func spanContext(t *testing.T) trace.SpanContext {
	t.Helper()
	tid, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := trace.SpanIDFromHex(spanID)
	if err != nil {
		t.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
}

func header(hs []processor.Header, key string) []string {
	var out []string
	for _, h := range hs {
		if h.Key == key {
			out = append(out, string(h.Value))
		}
	}
	return out
}

func TestHeaderCarrier(t *testing.T) {
	c := processor.HeaderCarrier{{Key: "k", Value: []byte("1")}, {Key: "x", Value: []byte("2")}, {Key: "k", Value: []byte("3")}}
	if got := c.Get("k"); got != "1" {
		t.Errorf("Get(k) = %q, want the first value, 1", got)
	}
	if got := c.Get("K"); got != "" {
		t.Errorf("Get(K) = %q, want \"\": keys are case-sensitive", got)
	}
	if got := c.Keys(); !slices.Equal(got, []string{"k", "x", "k"}) {
		t.Errorf("Keys() = %q", got)
	}
	c.Set("k", "new")
	if got := c.Keys(); !slices.Equal(got, []string{"k", "x"}) || c.Get("k") != "new" {
		t.Errorf("after Set(k): keys %q, k = %q; want one k = new, in the first one's place", got, c.Get("k"))
	}
	c.Set("y", "4")
	if got := c.Keys(); !slices.Equal(got, []string{"k", "x", "y"}) || c.Get("y") != "4" {
		t.Errorf("after Set(y): keys %q, y = %q; want y appended", got, c.Get("y"))
	}
}

func TestInjectHeadersNeverWritesItsInput(t *testing.T) {
	prop := propagation.TraceContext{}
	ctx := trace.ContextWithSpanContext(context.Background(), spanContext(t))

	// Spare capacity: an append in place would write into the caller's array.
	backing := make([]processor.Header, 1, 4)
	backing[0] = processor.Header{Key: "a", Value: []byte("1")}
	in := backing[:1]
	out := processor.InjectHeaders(ctx, prop, in)
	if got := header(out, "traceparent"); !slices.Equal(got, []string{traceparent}) {
		t.Fatalf("injected traceparent %q, want [%s]", got, traceparent)
	}
	if spare := backing[:2][1]; spare.Key != "" || spare.Value != nil || len(in) != 1 {
		t.Fatalf("InjectHeaders wrote into its input's array: %+v", backing[:2])
	}

	// Already there with the same value: nothing to copy, no duplicate.
	same := tracedPayload("v").Headers
	if got := processor.InjectHeaders(ctx, prop, same); &got[0] != &same[0] || len(got) != len(same) {
		t.Errorf("re-injecting the same traceparent gave a new slice %+v", got)
	}
	// A stale value is replaced in the copy only.
	stale := []processor.Header{{Key: "traceparent", Value: []byte("00-" + traceID + "-1111111111111111-01")}}
	got := processor.InjectHeaders(ctx, prop, stale)
	if !slices.Equal(header(got, "traceparent"), []string{traceparent}) || string(stale[0].Value) == traceparent {
		t.Errorf("stale header: result %q, input now %q; want the result replaced and the input kept", header(got, "traceparent"), stale[0].Value)
	}
	// No trace context: the headers come back as they are.
	if got := processor.InjectHeaders(context.Background(), prop, in); len(got) != 1 || &got[0] != &in[0] {
		t.Errorf("without trace context InjectHeaders returned %+v, want its input", got)
	}
}

// traceRun is one run of the chain RunTask -> Produce -> CommitOffsets over the
// fake consumer: what the user function saw and what was produced.
type traceRun struct {
	seen     []context.Context
	produced []kafkatest.ProducedRecord[processor.KafkaPayload]
}

// runTraced runs the chain on msgs and returns what its user function saw and what
// it produced. With prop the processor and Produce are given it.
func runTraced(t *testing.T, prop propagation.TextMapPropagator, msgs ...processor.KafkaPayload) traceRun {
	t.Helper()
	prod := kafkatest.NewMemoryProducer[processor.KafkaPayload]()
	var mu sync.Mutex
	var seen []context.Context
	task := func(ctx context.Context, m processor.Message[processor.KafkaPayload]) (processor.KafkaPayload, error) {
		mu.Lock()
		seen = append(seen, ctx)
		mu.Unlock()
		return m.Payload, nil
	}
	var opts []strategies.ProduceOption
	if prop != nil {
		opts = append(opts, strategies.WithPropagator(prop))
	}
	factory := processor.FactoryFunc[processor.KafkaPayload](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[processor.KafkaPayload], error) {
		produce, err := strategies.NewProduce(prod, "out", processor.Strategy[processor.KafkaPayload](strategies.NewCommitOffsets[processor.KafkaPayload](commit)), 0, opts...)
		if err != nil {
			return nil, err
		}
		return strategies.NewRunTask(task, processor.Strategy[processor.KafkaPayload](produce)), nil
	})
	h := processortest.NewHarness(t, nil, factory, processor.Config[processor.KafkaPayload]{
		CommitPolicy: processor.ImmediateCommit(),
		Propagator:   prop,
	})
	h.Consumer.Produce(p0, msgs...)
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("everything produced", func() bool { return len(prod.Produced()) == len(msgs) })
	for i := range msgs {
		prod.Ack(i)
	}
	h.WaitUntil("everything committed", func() bool { return h.Consumer.Committed(p0) == int64(len(msgs)) })
	revoked := h.Consumer.Revoke(p0)
	h.Await(revoked, "the revocation")
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return traceRun{seen: seen, produced: prod.Produced()}
}

func TestTraceContextFromInputToUserFunctionToOutput(t *testing.T) {
	want := spanContext(t)
	untraced := processor.KafkaPayload{Value: []byte("plain"), Headers: []processor.Header{{Key: "a", Value: []byte("1")}}}
	run := runTraced(t, propagation.TraceContext{}, tracedPayload("traced"), untraced)

	if len(run.seen) != 2 || len(run.produced) != 2 {
		t.Fatalf("the user function saw %d messages and %d were produced, want 2 and 2", len(run.seen), len(run.produced))
	}
	if got := trace.SpanContextFromContext(run.seen[0]); !got.Equal(want) {
		t.Errorf("the user function's context has span context %v, want the input's %v", got, want)
	}
	if got := trace.SpanContextFromContext(run.seen[1]); got.IsValid() {
		t.Errorf("a message without trace headers has span context %v, want none", got)
	}
	// The context is still the partition's, which the revocation cancelled.
	for i, ctx := range run.seen {
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Errorf("message %d: context error after its partition was revoked = %v, want context.Canceled", i, ctx.Err())
		}
	}
	out := run.produced[0].Payload
	if got := header(out.Headers, "traceparent"); !slices.Equal(got, []string{traceparent}) {
		t.Errorf("produced record's traceparent = %q, want exactly [%s]", got, traceparent)
	}
	if got := header(out.Headers, "a"); !slices.Equal(got, []string{"1"}) {
		t.Errorf("produced record lost its other headers: %+v", out.Headers)
	}
	if got := run.produced[1].Payload.Headers; len(got) != 1 || len(header(got, "traceparent")) != 0 {
		t.Errorf("the untraced message was produced with headers %+v, want its own only", got)
	}
}

func TestNoPropagatorNoTraceContext(t *testing.T) {
	run := runTraced(t, nil, tracedPayload("traced"))
	if len(run.seen) != 1 || len(run.produced) != 1 {
		t.Fatalf("the user function saw %d messages and %d were produced, want 1 and 1", len(run.seen), len(run.produced))
	}
	if got := trace.SpanContextFromContext(run.seen[0]); got.IsValid() {
		t.Errorf("without a propagator the user function's context has span context %v, want none", got)
	}
	// The input's headers go out as they came: nothing added, nothing rewritten.
	if got, in := run.produced[0].Payload.Headers, tracedPayload("traced").Headers; !slices.EqualFunc(got, in, func(a, b processor.Header) bool {
		return a.Key == b.Key && string(a.Value) == string(b.Value)
	}) {
		t.Errorf("without a propagator produced headers %+v, want the input's %+v", got, in)
	}
}

// ctxWriter is a kafka.Writer that keeps the context of every write and writes
// through to a MemoryProducer.
type ctxWriter struct {
	*kafkatest.MemoryProducer[processor.KafkaPayload]
	mu   sync.Mutex
	ctxs []context.Context
}

func (w *ctxWriter) Produce(ctx context.Context, topic string, payload processor.KafkaPayload) *processor.Delivery {
	w.mu.Lock()
	w.ctxs = append(w.ctxs, ctx)
	w.mu.Unlock()
	return w.MemoryProducer.Produce(ctx, topic, payload)
}

func (w *ctxWriter) contexts() []context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ctxs)
}

// runDLQ dead-letters offsets 0 (traced) and 1 (without trace headers) of p0
// through kafka.NewDLQProducer, which both backends use, and returns the writes.
// Offset 2 is valid.
func runDLQ(t *testing.T, prop propagation.TextMapPropagator) *ctxWriter {
	t.Helper()
	w := &ctxWriter{MemoryProducer: kafkatest.NewMemoryProducer[processor.KafkaPayload]()}
	f := processortest.NewFactory(nil, func(s *processortest.Strategy[processor.KafkaPayload]) {
		s.OnSubmit = func(s *processortest.Strategy[processor.KafkaPayload], m processor.Message[processor.KafkaPayload]) error {
			if pos, _ := m.Origin(); pos.Offset < 2 {
				return processor.Invalid(m, errors.New("bad"))
			}
			s.Accept(m)
			return s.Commit(m.Committable, false)
		}
	})
	h := processortest.NewHarness(t, f.Events(), processor.Factory[processor.KafkaPayload](f), processor.Config[processor.KafkaPayload]{
		CommitPolicy: processor.ImmediateCommit(),
		Propagator:   prop,
		DLQ:          &processor.DLQPolicy[processor.KafkaPayload]{Producer: kafka.NewDLQProducer(w, "dlq")},
	})
	h.Consumer.Produce(p0, tracedPayload("traced"), processor.KafkaPayload{Value: []byte("plain")}, processor.KafkaPayload{Value: []byte("valid")})
	h.Start()
	h.Consumer.Assign(p0)
	h.WaitUntil("both dead-lettered", func() bool { return len(w.Produced()) == 2 })
	w.Ack(0)
	w.Ack(1)
	// The commit of offset 2 waits for the deliveries of both.
	h.WaitUntil("all three committed", func() bool { return h.Consumer.Committed(p0) == 3 })
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestDLQCarriesTheTraceContext(t *testing.T) {
	w := runDLQ(t, propagation.TraceContext{})
	recs, ctxs := w.Produced(), w.contexts()
	traced := recs[0].Payload
	if got := header(traced.Headers, "traceparent"); !slices.Equal(got, []string{traceparent}) {
		t.Errorf("DLQ record's traceparent = %q, want exactly [%s]", got, traceparent)
	}
	if got := header(traced.Headers, kafka.HeaderOriginalOffset); !slices.Equal(got, []string{"0"}) {
		t.Errorf("DLQ record lost its origin headers: %+v", traced.Headers)
	}
	if got := trace.SpanContextFromContext(ctxs[0]); !got.Equal(spanContext(t)) {
		t.Errorf("the DLQ write ran in a context with span context %v, want the message's %v", got, spanContext(t))
	}
	if got := header(recs[1].Payload.Headers, "traceparent"); len(got) != 0 {
		t.Errorf("the untraced message's DLQ record has traceparent %q", got)
	}
}

func TestDLQWithoutPropagator(t *testing.T) {
	w := runDLQ(t, nil)
	recs, ctxs := w.Produced(), w.contexts()
	if got := trace.SpanContextFromContext(ctxs[0]); got.IsValid() {
		t.Errorf("without a propagator the DLQ write's context has span context %v", got)
	}
	// Exactly the input's headers and the four origin headers.
	if got := recs[0].Payload.Headers; len(got) != 6 || !slices.Equal(header(got, "traceparent"), []string{traceparent}) {
		t.Errorf("DLQ record headers %+v, want the input's two and the four origin headers", got)
	}
	if got := recs[1].Payload.Headers; len(got) != 4 {
		t.Errorf("untraced DLQ record headers %+v, want the four origin headers only", got)
	}
}
