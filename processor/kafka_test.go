package processor_test

import (
	"context"
	"errors"
	"testing"

	"github.com/creekstream/creek/processor"
)

// A delivery resolved already gives its outcome, not the error of a context that is
// done as well: a stopped caller must not take an acknowledged write for a failed one.
func TestDeliveryWaitPrefersTheOutcome(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	want := processor.Position{Partition: processor.Partition{Topic: "t", Index: 1}, Offset: 7}
	// One select over both would pick either about half the time.
	for i := range 100 {
		d := processor.NewDelivery()
		d.Resolve(want, nil)
		if pos, err := d.Wait(done); err != nil || pos != want {
			t.Fatalf("Wait %d on a resolved delivery with a done context = %v, %v; want %v, nil", i, pos, err, want)
		}
	}
	if _, err := processor.NewDelivery().Wait(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on an unresolved delivery with a done context = %v, want context.Canceled", err)
	}
}
