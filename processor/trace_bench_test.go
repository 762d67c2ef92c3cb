package processor_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
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
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := 0
			traced := 0
			identity := func(ctx context.Context, m kafkaMessage) (processor.KafkaPayload, error) {
				// Checked on every 1024th message only, so that the lookup does not
				// weigh on the figure.
				if n%1024 == 0 && trace.SpanContextFromContext(ctx).IsValid() {
					traced++
				}
				if n++; n == b.N {
					cancel()
				}
				return m.Payload, nil
			}
			factory := processor.FactoryFunc[processor.KafkaPayload](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[processor.KafkaPayload], error) {
				return strategies.NewRunTask(identity, processor.Strategy[processor.KafkaPayload](strategies.NewCommitOffsets[processor.KafkaPayload](commit))), nil
			})
			c := newRunConsumer()
			c.payload.Headers = tc.headers
			p, err := processor.New(processor.Consumer[processor.KafkaPayload](c), factory, processor.Config[processor.KafkaPayload]{
				Topics:     []string{"bench"},
				Propagator: propagation.TraceContext{},
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			if err := p.Run(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if wantTraced := (n + 1023) / 1024 * len(tc.headers); n < b.N || traced != wantTraced {
				b.Fatalf("processed %d messages (want %d), %d with a trace context (want %d)", n, b.N, traced, wantTraced)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
