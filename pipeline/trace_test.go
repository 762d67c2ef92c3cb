package pipeline_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
)

// TestPropagatorGivenOnceReachesProduce: with the propagator on the processor's
// Config only, a user function sees the input's trace and the Produce step writes
// it to what it sends.
func TestPropagatorGivenOnceReachesProduce(t *testing.T) {
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	prod := kafkatest.NewMemoryProducer[processor.KafkaPayload]()
	seen := make(chan trace.SpanContext, 1)
	mapped := pipeline.Map(pipeline.FromKafka(), func(ctx context.Context, p processor.KafkaPayload) (processor.KafkaPayload, error) {
		seen <- trace.SpanContextFromContext(ctx)
		return processor.KafkaPayload{Value: p.Value}, nil // the headers are not carried over by hand
	})
	h := processortest.NewHarness(t, nil, pipeline.Commit(pipeline.Produce(mapped, prod, "out")), processor.Config[processor.KafkaPayload]{
		CommitPolicy: processor.ImmediateCommit(),
		Propagator:   propagation.TraceContext{},
	})
	p0 := processor.Partition{Topic: "t", Index: 0}
	h.Consumer.Produce(p0, processor.KafkaPayload{Value: []byte("x"), Headers: []processor.Header{{Key: "traceparent", Value: []byte(traceparent)}}})
	h.Start()
	h.Consumer.Assign(p0)
	if sc := <-seen; sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("the function's context has trace %s, want the input's", sc.TraceID())
	}
	h.WaitUntil("the record produced", func() bool { return len(prod.Produced()) == 1 })
	var got []string
	for _, hd := range prod.Produced()[0].Payload.Headers {
		if hd.Key == "traceparent" {
			got = append(got, string(hd.Value))
		}
	}
	if len(got) != 1 || got[0] != traceparent {
		t.Fatalf("produced traceparent %q, want [%s]", got, traceparent)
	}
	prod.Ack(0)
	h.WaitUntil("committed", func() bool { return h.Consumer.Committed(p0) == 1 })
}
