// Package metricstest provides Recorder, an in-memory metrics.Metrics for tests that
// assert on the figures a component records, the way net/http/httptest provides a
// recorder for handlers.
//
// A test passes a Recorder wherever a metrics.Metrics is asked for and then reads
// counters, gauges and timings back by name and tag set, or waits for a counter to
// reach a value:
//
//	rec := metricstest.NewRecorder()
//	p, err := processor.New(consumer, factory, processor.Config[string]{Metrics: rec, ...})
//	...
//	if err := rec.WaitCounter(ctx, "consumer.run.count", 1); err != nil {
//		t.Fatal(err)
//	}
package metricstest
