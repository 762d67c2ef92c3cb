package kafkatest

import (
	"context"
	"errors"
	"testing"

	"github.com/creekstream/creek/processor"
)

func TestMemoryProducer(t *testing.T) {
	p := NewMemoryProducer[string]()
	ctx := context.Background()
	da := p.Produce(ctx, "a", "a0")
	db := p.Produce(ctx, "b", "b0")
	da1 := p.Produce(ctx, "a", "a1")

	want := []ProducedRecord[string]{
		{processor.Position{Partition: processor.Partition{Topic: "a"}, Offset: 0}, "a0"},
		{processor.Position{Partition: processor.Partition{Topic: "b"}, Offset: 0}, "b0"},
		{processor.Position{Partition: processor.Partition{Topic: "a"}, Offset: 1}, "a1"},
	}
	got := p.Produced()
	if len(got) != len(want) {
		t.Fatalf("Produced() has %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	for _, d := range []*processor.Delivery{da, db, da1} {
		select {
		case <-d.Done():
			t.Fatal("a delivery was resolved before Ack or Fail")
		default:
		}
	}

	// Out of order: the last first.
	p.Ack(2)
	if pos, err := da1.Result(); err != nil || pos != want[2].Position {
		t.Fatalf("delivery 2 = (%v, %v), want (%v, nil)", pos, err, want[2].Position)
	}
	errBroker := errors.New("broker refused")
	p.Fail(0, errBroker)
	if _, err := da.Result(); !errors.Is(err, errBroker) {
		t.Fatalf("delivery 0 error = %v, want %v", err, errBroker)
	}
	p.AckAll()
	if pos, err := db.Result(); err != nil || pos != want[1].Position {
		t.Fatalf("delivery 1 = (%v, %v), want (%v, nil)", pos, err, want[1].Position)
	}
	// A resolved delivery keeps its first outcome.
	if _, err := da.Result(); !errors.Is(err, errBroker) {
		t.Fatalf("delivery 0 error after AckAll = %v, want still %v", err, errBroker)
	}
}

func TestMemoryProducerDoneContext(t *testing.T) {
	p := NewMemoryProducer[int]()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := p.Produce(ctx, "a", 1)
	select {
	case <-d.Done():
	default:
		t.Fatal("delivery under a done context is unresolved, want it failed at once")
	}
	if _, err := d.Result(); !errors.Is(err, context.Canceled) {
		t.Fatalf("delivery error = %v, want context.Canceled", err)
	}
	if n := len(p.Produced()); n != 0 {
		t.Fatalf("%d records produced under a done context, want 0", n)
	}
}
