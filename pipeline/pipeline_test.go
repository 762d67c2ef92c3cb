package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// go-metrics, which sarama records into, starts one ticker goroutine per
	// process and never stops it.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"))
}

func upper(_ context.Context, s string) (string, error) { return strings.ToUpper(s), nil }

func TestOperatorsHandOnInOrderAndCommitEverything(t *testing.T) {
	src := pipeline.From[string]()
	cases := []struct {
		name   string
		build  func(out *outputs) *pipeline.Factory[string]
		inputs []string
		want   []string
	}{
		{"Map", func(out *outputs) *pipeline.Factory[string] {
			return record(pipeline.Map(src, upper), out)
		}, []string{"a", "b", "c"}, []string{"A", "B", "C"}},
		{"MapMessage reaches the offsets", func(out *outputs) *pipeline.Factory[string] {
			return record(pipeline.MapMessage(src, func(_ context.Context, m processor.Message[string]) (string, error) {
				pos, _ := m.Origin()
				return fmt.Sprintf("%d:%s", pos.Offset, m.Payload), nil
			}), out)
		}, []string{"a", "b"}, []string{"0:a", "1:b"}},
		{"MapConcurrent keeps the order", func(out *outputs) *pipeline.Factory[string] {
			// The first message finishes only after the last one has run, so
			// the results complete out of order.
			lastRan := make(chan struct{})
			return record(pipeline.MapConcurrent(src, func(ctx context.Context, s string) (string, error) {
				switch s {
				case "a":
					select {
					case <-lastRan:
					case <-ctx.Done():
					}
				case "c":
					close(lastRan)
				}
				return strings.ToUpper(s), nil
			}, 3), out)
		}, []string{"a", "b", "c"}, []string{"A", "B", "C"}},
		{"Filter drops, and commits the dropped at the end", func(out *outputs) *pipeline.Factory[string] {
			return record(pipeline.Filter(src, func(_ context.Context, s string) bool { return s != "" }), out)
		}, []string{"a", "", "b", "", ""}, []string{"a", "b"}},
		{"FlatMap", func(out *outputs) *pipeline.Factory[string] {
			return record(pipeline.FlatMap(src, func(_ context.Context, s string) ([]string, error) {
				return strings.Fields(s), nil
			}), out)
		}, []string{"a b", "", "c"}, []string{"a", "b", "c"}},
		{"Batch by size, and by time for the rest", func(out *outputs) *pipeline.Factory[string] {
			return record(pipeline.Batch(src, 2, 20*time.Millisecond), out)
		}, []string{"a", "b", "c", "d", "e"}, []string{"[a b]", "[c d]", "[e]"}},
		{"BatchMessages keeps the messages", func(out *outputs) *pipeline.Factory[string] {
			b := pipeline.BatchMessages(src, 2, 20*time.Millisecond)
			return record(pipeline.Map(b, func(_ context.Context, ms []processor.Message[string]) (string, error) {
				var s []string
				for _, m := range ms {
					pos, _ := m.Origin()
					s = append(s, fmt.Sprintf("%d:%s", pos.Offset, m.Payload))
				}
				return strings.Join(s, ","), nil
			}), out)
		}, []string{"a", "b", "c"}, []string{"0:a,1:b", "2:c"}},
		{"Reduce", func(out *outputs) *pipeline.Factory[string] {
			sum := func(n int, s string) (int, error) { return n + len(s), nil }
			return record(pipeline.Reduce(src, 2, 20*time.Millisecond, sum, func() int { return 0 }), out)
		}, []string{"a", "bb", "ccc"}, []string{"3", "3"}},
		{"Through a hand-written strategy", func(out *outputs) *pipeline.Factory[string] {
			inner := &outputs{}
			st := pipeline.Through(src, func(next processor.Strategy[string], _ []strategies.Option) (processor.Strategy[string], error) {
				return tap[string]{next: next, out: inner}, nil
			})
			return record(pipeline.Map(st, upper), out)
		}, []string{"a"}, []string{"A"}},
		{"a chain of several", func(out *outputs) *pipeline.Factory[string] {
			words := pipeline.FlatMap(src, func(_ context.Context, s string) ([]string, error) { return strings.Fields(s), nil })
			long := pipeline.Filter(words, func(_ context.Context, w string) bool { return len(w) > 1 })
			lens := pipeline.MapConcurrent(long, func(_ context.Context, w string) (int, error) { return len(w), nil }, 2)
			return record(pipeline.Batch(lens, 3, 20*time.Millisecond), out)
		}, []string{"ab c def", "g hi", "jkl"}, []string{"[2 3 2]", "[3]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := &outputs{}
			runUntilCommitted(t, tc.build(out), processor.Config[string]{}, tc.inputs...)
			if got := out.all(); !slices.Equal(got, tc.want) {
				t.Errorf("out = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProduceCommitsOnlyAcknowledgedOutput(t *testing.T) {
	prod := kafkatest.NewMemoryProducer[string]()
	factory := pipeline.Commit(pipeline.Produce(pipeline.Map(pipeline.From[string](), upper), prod, "out"))
	h := newStartedHarness(t, factory, processor.Config[string]{CommitPolicy: processor.ImmediateCommit()}, "a", "b", "c")
	h.WaitUntil("three records produced", func() bool { return len(prod.Produced()) == 3 })
	if c := h.Consumer.Committed(p0); c != 0 {
		t.Fatalf("committed offset %d before any delivery was acknowledged", c)
	}
	prod.AckAll()
	h.WaitUntil("offset 3 committed", func() bool { return h.Consumer.Committed(p0) == 3 })
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range prod.Produced() {
		got = append(got, r.Position.Partition.Topic+"/"+r.Payload)
	}
	if want := []string{"out/A", "out/B", "out/C"}; !slices.Equal(got, want) {
		t.Errorf("produced %q, want %q", got, want)
	}
}

func TestInvalidFromAFunctionReachesTheDLQ(t *testing.T) {
	src := pipeline.From[string]()
	errBad := errors.New("not an order")
	// check fails the input "bad" as invalid, with context around the mark.
	check := func(s string) error {
		if s == "bad" {
			return fmt.Errorf("parse %q: %w", s, pipeline.Invalid(errBad))
		}
		return nil
	}
	cases := []struct {
		name  string
		build func(out *outputs) *pipeline.Factory[string]
		want  []string
	}{
		{"Map", func(out *outputs) *pipeline.Factory[string] {
			return record(pipeline.Map(src, func(_ context.Context, s string) (string, error) { return s, check(s) }), out)
		}, []string{"a", "c"}},
		{"MapMessage", func(out *outputs) *pipeline.Factory[string] {
			return record(pipeline.MapMessage(src, func(_ context.Context, m processor.Message[string]) (string, error) {
				return m.Payload, check(m.Payload)
			}), out)
		}, []string{"a", "c"}},
		{"MapConcurrent", func(out *outputs) *pipeline.Factory[string] {
			return record(pipeline.MapConcurrent(src, func(_ context.Context, s string) (string, error) { return s, check(s) }, 2), out)
		}, []string{"a", "c"}},
		{"FlatMap", func(out *outputs) *pipeline.Factory[string] {
			return record(pipeline.FlatMap(src, func(_ context.Context, s string) ([]string, error) { return []string{s}, check(s) }), out)
		}, []string{"a", "c"}},
		{"Reduce", func(out *outputs) *pipeline.Factory[string] {
			join := func(acc string, s string) (string, error) {
				if err := check(s); err != nil {
					return acc, err
				}
				return acc + s, nil
			}
			return record(pipeline.Reduce(src, 2, time.Minute, join, func() string { return "" }), out)
		}, []string{"ac"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, dlq := &outputs{}, &fakeDLQ{}
			runUntilCommitted(t, tc.build(out), processor.Config[string]{DLQ: dlqPolicy(dlq)}, "a", "bad", "c")
			if got := out.all(); !slices.Equal(got, tc.want) {
				t.Errorf("out = %q, want %q", got, tc.want)
			}
			letters, raw := dlq.letters()
			if len(letters) != 1 || !slices.Equal(raw, []string{"bad"}) {
				t.Fatalf("dead-lettered %q (%v), want only \"bad\"", raw, letters)
			}
			inv := letters[0]
			if inv.Partition != p0 || inv.Offset != 1 || inv.Reason != `parse "bad": not an order` || !errors.Is(inv, errBad) {
				t.Errorf("dead letter %+v: want p0 offset 1, the whole reason, wrapping the cause", inv)
			}
		})
	}
}

func TestAnErrorNotMarkedInvalidStopsTheProcessor(t *testing.T) {
	boom := errors.New("database down")
	factory := pipeline.Commit(pipeline.Map(pipeline.From[string](), func(context.Context, string) (string, error) { return "", boom }))
	h := newStartedHarness(t, factory, processor.Config[string]{DLQ: dlqPolicy(&fakeDLQ{})}, "a")
	if err := h.Wait(); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want it to fail with %v", err, boom)
	}
	if _, ok := processor.AsInvalid(h.Wait()); ok {
		t.Error("an unmarked error was reported as an invalid message")
	}
}

func TestHealthcheckAnswersWhileTheLoopRuns(t *testing.T) {
	live, err := strategies.NewLiveness(strategies.LivenessConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(live.Handler())
	defer srv.Close()
	status := func() int {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusServiceUnavailable {
		t.Fatalf("before the loop polled: status %d, want 503", got)
	}
	runUntilCommitted(t, pipeline.Commit(pipeline.Healthcheck(pipeline.From[string](), live)), processor.Config[string]{}, "a")
	if got := status(); got != http.StatusOK {
		t.Errorf("after the loop polled: status %d, want 200", got)
	}
}

func TestAStageStartsSeveralPipelines(t *testing.T) {
	shared := pipeline.Map(pipeline.From[string](), upper)
	var calls atomic.Int32
	first, second := &outputs{}, &outputs{}
	f1 := record(pipeline.Map(shared, func(_ context.Context, s string) (string, error) { calls.Add(1); return s + "1", nil }), first)
	f2 := record(shared, second)
	runUntilCommitted(t, f1, processor.Config[string]{}, "a")
	runUntilCommitted(t, f2, processor.Config[string]{}, "b")
	if !slices.Equal(first.all(), []string{"A1"}) || !slices.Equal(second.all(), []string{"B"}) || calls.Load() != 1 {
		t.Errorf("first %q, second %q, calls %d: the pipelines changed each other", first.all(), second.all(), calls.Load())
	}
}
