package strategies

import (
	"testing"

	"go.opentelemetry.io/otel/propagation"
)

// BenchmarkProducePropagatorCommitOffsets is BenchmarkProduceCommitOffsets with
// WithPropagator: every message's context carries a span context, which Produce
// writes into a copy of the payload's headers.
func BenchmarkProducePropagatorCommitOffsets(b *testing.B) {
	msgs := benchMessages(1 << 12)
	ctx := tracedContext(b)
	for i := range msgs {
		msgs[i] = msgs[i].WithContext(ctx)
	}
	benchProduce(b, msgs, WithPropagator(propagation.TraceContext{}))
}
