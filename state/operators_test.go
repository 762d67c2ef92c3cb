package state_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/lovoo/goka/storage"

	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
	"github.com/creekstream/creek/state"
	"github.com/creekstream/creek/state/statetest"
)

// word is an input of the aggregation tests: a key and a number.
type word struct {
	Key string
	N   int
}

func wordKey(w word) string { return w.Key }

// runStage runs the stage build makes over words on a fake consumer, every word on
// partition 0, and returns the changes passed on as "key=value".
func runStage[V any](t *testing.T, build func(pipeline.Stage[word, word]) pipeline.Stage[word, state.Change[word, V]], words []word) []string {
	t.Helper()
	return runStageFormat(t, build, words, func(c state.Change[word, V]) string { return fmt.Sprintf("%s=%v", c.Key, c.Value) })
}

// runStageFormat is runStage with the changes formatted by format.
func runStageFormat[V any](t *testing.T, build func(pipeline.Stage[word, word]) pipeline.Stage[word, state.Change[word, V]], words []word, format func(state.Change[word, V]) string) []string {
	t.Helper()
	var mu sync.Mutex
	var got []string
	out := pipeline.Map(build(pipeline.From[word]()), func(_ context.Context, c state.Change[word, V]) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, format(c))
		return "", nil
	})
	h := processortest.NewHarness(t, nil, pipeline.Commit(out), processor.Config[word]{CommitPolicy: processor.ImmediateCommit()})
	part := processor.Partition{Topic: "t", Index: 0}
	h.Start()
	h.Await(h.Consumer.Assign(part), "the assignment")
	h.Consumer.Produce(part, words...)
	h.WaitUntil("every word committed", func() bool { return h.Consumer.Committed(part) == int64(len(words)) })
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

func TestAggregations(t *testing.T) {
	words := []word{{"a", 1}, {"b", 10}, {"a", 2}, {"a", 3}, {"b", 20}}
	mem := storage.MemoryBuilder()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T) []string
		want string
	}{
		{"count", func(t *testing.T) []string {
			return runStage(t, func(st pipeline.Stage[word, word]) pipeline.Stage[word, state.Change[word, int64]] {
				return state.Count(st, state.Config[int64]{Name: "c", Changelog: statetest.NewChangelog(), Storage: mem}, wordKey)
			}, words)
		}, "a=1 b=1 a=2 a=3 b=2"},
		{"aggregate into a list", func(t *testing.T) []string {
			return runStage(t, func(st pipeline.Stage[word, word]) pipeline.Stage[word, state.Change[word, []int]] {
				return state.Aggregate(st, state.Config[[]int]{Name: "l", Changelog: statetest.NewChangelog(), Storage: mem, Codec: state.JSON[[]int]{}},
					wordKey, func() []int { return []int{} }, func(l []int, w word) ([]int, error) { return append(l, w.N), nil })
			}, words)
		}, "a=[1] b=[10] a=[1 2] a=[1 2 3] b=[10 20]"},
		{"reduce to the sum", func(t *testing.T) []string {
			return runStage(t, func(st pipeline.Stage[word, word]) pipeline.Stage[word, state.Change[word, word]] {
				return state.Reduce(st, state.Config[word]{Name: "s", Changelog: statetest.NewChangelog(), Storage: mem, Codec: state.JSON[word]{}},
					wordKey, func(acc, w word) (word, error) { return word{acc.Key, acc.N + w.N}, nil })
			}, words)
		}, "a={a 1} b={b 10} a={a 3} a={a 6} b={b 30}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(tc.run(t), " "); got != tc.want {
				t.Fatalf("changes %s, want %s", got, tc.want)
			}
		})
	}
}
