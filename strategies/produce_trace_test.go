package strategies

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

const (
	testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpanID  = "00f067aa0ba902b7"
)

// tracedContext returns a context holding the span context testTraceID/testSpanID.
func tracedContext(t testing.TB) context.Context {
	t.Helper()
	tid, err := trace.TraceIDFromHex(testTraceID)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := trace.SpanIDFromHex(testSpanID)
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	return trace.ContextWithSpanContext(context.Background(), sc)
}

func traceparents(hs []processor.Header) []string {
	var out []string
	for _, h := range hs {
		if h.Key == "traceparent" {
			out = append(out, string(h.Value))
		}
	}
	return out
}

func newKafkaProduce(t *testing.T, opts ...ProduceOption) (*Produce[processor.KafkaPayload], *kafkatest.MemoryProducer[processor.KafkaPayload]) {
	t.Helper()
	prod := kafkatest.NewMemoryProducer[processor.KafkaPayload]()
	s, err := NewProduce(prod, "out", processor.Strategy[processor.KafkaPayload](&recorder[processor.KafkaPayload]{}), 0, opts...)
	if err != nil {
		t.Fatalf("NewProduce: %v", err)
	}
	return s, prod
}

func TestProduceWithPropagatorInjectsTheMessagesContext(t *testing.T) {
	s, prod := newKafkaProduce(t, WithPropagator(propagation.TraceContext{}))
	// Spare capacity in the input's headers: an append in place would write into
	// the array the input message still holds.
	headers := make([]processor.Header, 1, 4)
	headers[0] = processor.Header{Key: "a", Value: []byte("1")}
	in := processor.KafkaPayload{Value: []byte("v"), Headers: headers}
	msg := processor.NewBrokerMessage(in, processor.Partition{Topic: "in"}, 0, time.Unix(0, 0)).WithContext(tracedContext(t))
	untraced := processor.NewBrokerMessage(in, processor.Partition{Topic: "in"}, 1, time.Unix(0, 0))
	for _, m := range []processor.Message[processor.KafkaPayload]{msg, untraced} {
		if err := s.Submit(m); err != nil {
			t.Fatalf("Submit: %v", err)
		}
	}

	recs := prod.Produced()
	want := "00-" + testTraceID + "-" + testSpanID + "-01"
	if got := traceparents(recs[0].Payload.Headers); !slices.Equal(got, []string{want}) {
		t.Errorf("produced traceparent %q, want [%s]", got, want)
	}
	if n := len(recs[0].Payload.Headers); n != 2 {
		t.Errorf("produced headers %+v, want the input's one and traceparent", recs[0].Payload.Headers)
	}
	if spare := headers[:2][1]; spare.Key != "" || spare.Value != nil || len(msg.Payload.Headers) != 1 {
		t.Errorf("the input payload's headers were written to: %+v", headers[:2])
	}
	if got := recs[1].Payload.Headers; len(got) != 1 || len(traceparents(got)) != 0 {
		t.Errorf("a message whose context has no trace was produced with headers %+v, want its own", got)
	}
}

func TestProduceWithoutPropagatorWritesThePayloadAsItIs(t *testing.T) {
	s, prod := newKafkaProduce(t)
	in := processor.KafkaPayload{Value: []byte("v"), Headers: []processor.Header{{Key: "a", Value: []byte("1")}}}
	if err := s.Submit(processor.NewBrokerMessage(in, processor.Partition{Topic: "in"}, 0, time.Unix(0, 0)).WithContext(tracedContext(t))); err != nil {
		t.Fatal(err)
	}
	if got := prod.Produced()[0].Payload.Headers; len(got) != 1 || &got[0] != &in.Headers[0] {
		t.Errorf("without a propagator Produce wrote headers %+v, want the input's own slice", got)
	}
}

func TestProduceWithPropagatorOfOtherPayloadsInjectsNothing(t *testing.T) {
	s, prod, _ := newTestProduce(t, 0, WithPropagator(propagation.TraceContext{}))
	if s.inject != nil {
		t.Fatal("Produce[string] has an injector; only KafkaPayload has headers")
	}
	if err := s.Submit(processor.NewBrokerMessage("v", processor.Partition{Topic: "in"}, 0, time.Unix(0, 0)).WithContext(tracedContext(t))); err != nil {
		t.Fatal(err)
	}
	if got := prod.Produced()[0].Payload; got != "v" {
		t.Errorf("produced %q, want v", got)
	}
}
