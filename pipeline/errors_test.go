package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
	"github.com/creekstream/creek/strategies"
)

func TestConfigurationErrorsNameTheStepOnceAtNew(t *testing.T) {
	src := pipeline.From[string]()
	m := pipeline.Map(src, upper) // step 1
	prod := kafkatest.NewMemoryProducer[string]()
	errOwn := errors.New("own strategy refused")
	cases := []struct {
		name    string
		factory *pipeline.Factory[string]
		want    []string
	}{
		{"concurrency 0", pipeline.Commit(pipeline.MapConcurrent(m, upper, 0)),
			[]string{"pipeline: step 2 (MapConcurrent): strategies: run task concurrently: concurrency is 0"}},
		{"empty topic", pipeline.Commit(pipeline.Produce(m, prod, "")),
			[]string{"pipeline: step 2 (Produce): strategies: produce: topic is empty"}},
		{"nil producer", pipeline.Commit(pipeline.Produce(m, nil, "out")),
			[]string{"pipeline: step 2 (Produce): strategies: produce: producer is nil"}},
		{"nil Map function", pipeline.Commit(pipeline.Map[string, string, string](src, nil)),
			[]string{"pipeline: step 1 (Map): function is nil"}},
		{"nil MapMessage function", pipeline.Commit(pipeline.MapMessage[string, string, string](src, nil)),
			[]string{"pipeline: step 1 (MapMessage): function is nil"}},
		{"nil predicate", pipeline.Commit(pipeline.Filter(src, nil)),
			[]string{"pipeline: step 1 (Filter): function is nil"}},
		{"nil FlatMap function", pipeline.Commit(pipeline.FlatMap[string, string, string](src, nil)),
			[]string{"pipeline: step 1 (FlatMap): function is nil"}},
		{"batch without limits", pipeline.Commit(pipeline.Batch(m, 0, 0)),
			[]string{"pipeline: step 2 (Batch): strategies: batch limits need MaxSize > 0 or MaxWait > 0"}},
		{"negative batch size", pipeline.Commit(pipeline.BatchMessages(m, -1, time.Second)),
			[]string{"pipeline: step 2 (BatchMessages): strategies: batch limits MaxSize -1"}},
		{"nil accumulate", pipeline.Commit(pipeline.Reduce[string, string, int](m, 10, 0, nil, func() int { return 0 })),
			[]string{"pipeline: step 2 (Reduce): accumulate or initial function is nil"}},
		{"nil liveness", pipeline.Commit(pipeline.Healthcheck(m, nil)),
			[]string{"pipeline: step 2 (Healthcheck): liveness is nil"}},
		{"nil build", pipeline.Commit(pipeline.Through[string, string, string](m, nil)),
			[]string{"pipeline: step 2 (Through): function is nil"}},
		{"a hand-written step refuses", pipeline.Commit(pipeline.Through(m, func(processor.Strategy[string], []strategies.Option) (processor.Strategy[string], error) {
			return nil, errOwn
		})), []string{"pipeline: step 2 (Through): own strategy refused"}},
		{"a hand-written step builds nothing", pipeline.Commit(pipeline.Through(m, func(processor.Strategy[string], []strategies.Option) (processor.Strategy[string], error) {
			return nil, nil
		})), []string{"pipeline: step 2 (Through): build returned no strategy"}},
		{"every wrong step is named", pipeline.Commit(pipeline.Produce(pipeline.MapConcurrent(pipeline.Filter(m, nil), upper, -1), prod, "")),
			[]string{"step 2 (Filter): function is nil", "step 3 (MapConcurrent):", "step 4 (Produce): strategies: produce: topic is empty"}},
		{"no source", pipeline.Commit(pipeline.Map(pipeline.Stage[string, string]{}, upper)),
			[]string{"pipeline: the stage does not start with From or FromKafka"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.factory.Validate()
			if err == nil {
				t.Fatal("Validate = nil, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to contain %q", err, w)
				}
			}
			_, nerr := processor.New[string](processortest.NewConsumer[string](nil), tc.factory, processor.Config[string]{Topics: []string{"t"}})
			if nerr == nil || !strings.Contains(nerr.Error(), err.Error()) {
				t.Errorf("processor.New = %v, want it to fail with %q", nerr, err)
			}
			// A Factory that was never validated reports the same from Create.
			if _, cerr := tc.factory.Create(func(processor.Committable, bool) error { return nil }, nil); cerr == nil {
				t.Error("Create of an invalid pipeline returned no error")
			}
		})
	}
}

func TestAValidPipelineValidatesWithoutRunningItsFunctions(t *testing.T) {
	called := false
	fn := func(_ context.Context, s string) (string, error) { called = true; return s, nil }
	st := pipeline.MapConcurrent(pipeline.Map(pipeline.From[string](), fn), fn, 4)
	st = pipeline.Filter(st, func(context.Context, string) bool { called = true; return true })
	b := pipeline.Batch(st, 10, time.Second)
	out := pipeline.Produce(pipeline.Map(b, func(_ context.Context, ss []string) (string, error) { return strings.Join(ss, ","), nil }),
		kafkatest.NewMemoryProducer[string](), "out")
	if err := pipeline.Commit(out).Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	if called {
		t.Error("Validate ran a user function")
	}
}
