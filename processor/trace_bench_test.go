package processor_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/creekstream/creek/processor"
)

// BenchmarkLoopChainPropagator is BenchmarkLoopChain with a W3C propagator
// configured: the cost of reading the trace context of every message, with a
// traceparent header on each ("traced") and without any header ("no headers").
// The user function checks that the context it gets carries the trace.
func BenchmarkLoopChainPropagator(b *testing.B) {
	for _, tc := range []struct {
		name    string
		headers []processor.Header
	}{
		{"traced", []processor.Header{{Key: "traceparent", Value: []byte(traceparent)}}},
		{"no headers", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			traced, n := 0, 0
			c := newRunConsumer()
			c.payload.Headers = tc.headers
			runLoopChain(b, c, processor.Config[processor.KafkaPayload]{Propagator: propagation.TraceContext{}}, func(ctx context.Context, i int) {
				// Checked on every 1024th message only, so that the lookup does not
				// weigh on the figure.
				if i%1024 == 0 && trace.SpanContextFromContext(ctx).IsValid() {
					traced++
				}
				n = i + 1
			})
			if want := (n + 1023) / 1024 * len(tc.headers); traced != want {
				b.Fatalf("%d of the checked messages had a trace context, want %d", traced, want)
			}
		})
	}
}
