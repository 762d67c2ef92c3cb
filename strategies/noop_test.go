package strategies

import (
	"context"
	"testing"
	"time"

	"github.com/creekstream/creek/processor"
)

func TestNoopAcceptsEverything(t *testing.T) {
	var s processor.Strategy[string] = NewNoop[string]()
	p := processor.Partition{Topic: "t", Index: 0}
	msgs := []processor.Message[string]{
		processor.NewBrokerMessage("a", p, 0, time.Unix(1, 0)),
		processor.NewFiltered[string](processor.CommittableOf(p, 2), time.Unix(2, 0)),
	}
	for _, m := range msgs {
		if err := s.Submit(m); err != nil {
			t.Fatalf("Submit(%v) = %v, want nil", m.Committable, err)
		}
	}
	if err := s.Poll(); err != nil {
		t.Fatalf("Poll = %v, want nil", err)
	}
	s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Join(ctx); err != nil {
		t.Fatalf("Join = %v, want nil", err)
	}
	s.Terminate()
}
