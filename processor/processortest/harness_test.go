package processortest_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/processor/processortest"
)

// upper is a user's own step: it upper-cases payloads for the next step.
type upper struct{ next processor.Strategy[string] }

func (u upper) Submit(m processor.Message[string]) error {
	return u.next.Submit(processor.WithPayload(m, strings.ToUpper(m.Payload)))
}
func (u upper) Poll() error                    { return u.next.Poll() }
func (u upper) Close()                         { u.next.Close() }
func (u upper) Terminate()                     { u.next.Terminate() }
func (u upper) Join(ctx context.Context) error { return u.next.Join(ctx) }

// TestHarnessRunsAUsersFactory is the package's intended use: a user's factory
// puts its step in front of the fake Strategy, and the test checks what reached it,
// what was committed and in what order things happened.
func TestHarnessRunsAUsersFactory(t *testing.T) {
	p := processor.Partition{Topic: "t", Index: 0}
	ev := processortest.NewEvents()
	sink := processortest.NewFactory[string](ev, nil)
	factory := processor.FactoryFunc[string](func(commit processor.CommitFunc, ps []processor.Partition) (processor.Strategy[string], error) {
		next, err := sink.Create(commit, ps)
		return upper{next}, err
	})
	h := processortest.NewHarness(t, ev, factory, processor.Config[string]{CommitPolicy: processor.ImmediateCommit()})
	h.Consumer.Produce(p, "a", "b", "c")
	h.Start()
	h.Await(h.Consumer.Assign(p), "the assignment")
	h.WaitUntil("offset 3 committed", func() bool { return h.Consumer.Committed(p) == 3 })
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := sink.Strategy(t, 0).Payloads(); !slices.Equal(got, []string{"A", "B", "C"}) {
		t.Errorf("payloads = %v, want A B C", got)
	}
	if join, closed := ev.Index(t, "strategy 1 join"), ev.Index(t, "consumer close"); join > closed {
		t.Errorf("strategy joined after the consumer closed: %v", ev.All())
	}
	if !h.Consumer.Closed() {
		t.Error("consumer not closed")
	}
}

// TestConsumerFetchAndErrors covers what the harness test does not reach.
func TestConsumerFetchAndErrors(t *testing.T) {
	p := processor.Partition{Topic: "t", Index: 1}
	c := processortest.NewConsumer[int](nil)
	c.Produce(p, 10, 11)
	tests := []struct {
		offset  int64
		want    int
		wantErr bool
	}{{0, 10, false}, {1, 11, false}, {2, 0, true}}
	for _, tt := range tests {
		m, err := c.Fetch(context.Background(), processor.Position{Partition: p, Offset: tt.offset})
		if (err != nil) != tt.wantErr || m.Payload != tt.want {
			t.Errorf("Fetch(%d) = %v, %v; want %v (error %v)", tt.offset, m.Payload, err, tt.want, tt.wantErr)
		}
	}
	if c.Fetches() != 3 {
		t.Errorf("Fetches = %d, want 3", c.Fetches())
	}
	c.SetCommitError(context.Canceled)
	if err := c.Commit(context.Background(), map[processor.Partition]int64{p: 1}); err == nil {
		t.Error("Commit succeeded with a commit error set")
	}
	if len(c.Commits()) != 0 || !c.Events().Has("commit failed") {
		t.Errorf("failed commit recorded as %v, events %v", c.Commits(), c.Events().All())
	}
}
