package strategies

import (
	"testing"

	"go.opentelemetry.io/otel/propagation"

	"github.com/creekstream/creek/processor"
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
	parts := []processor.Partition{{Topic: "bench", Index: 0}, {Topic: "bench", Index: 1}, {Topic: "bench", Index: 2}, {Topic: "bench", Index: 3}}
	commit, _ := stagingCommit(parts)
	prod := &ackingProducer{}
	s, err := NewProduce[processor.KafkaPayload](prod, "out", NewCommitOffsets[processor.KafkaPayload](commit), 0, WithPropagator(propagation.TraceContext{}))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Submit(msgs[i&(len(msgs)-1)]); err != nil {
			b.Fatal(err)
		}
		i++
		if i%256 == 0 {
			if err := s.Poll(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
