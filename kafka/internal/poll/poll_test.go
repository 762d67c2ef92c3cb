package poll

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/creekstream/creek/processor"
)

func part(i int32) processor.Partition { return processor.Partition{Topic: "t", Index: i} }

// newTest returns a Poller over int records whose callbacks append to events.
func newTest(t *testing.T, withLost bool) (*Events, chan Batch[int], *Poller[int], *[]string) {
	t.Helper()
	ev := NewEvents()
	queue := make(chan Batch[int], 8)
	p := NewPoller(ev, Client[int]{
		Queue: queue, Closing: make(chan struct{}), Closed: fmt.Errorf("closed"),
		Pause: func(map[string][]int32) {}, Resume: func(map[string][]int32) {},
	})
	var events []string
	cb := processor.RebalanceCallbacks{
		OnAssign: func(ps []processor.Partition) { events = append(events, fmt.Sprint("assign ", ps)) },
		OnRevoke: func(ps []processor.Partition) { events = append(events, fmt.Sprint("revoke ", ps)) },
	}
	if withLost {
		cb.OnLost = func(ps []processor.Partition) { events = append(events, fmt.Sprint("lost ", ps)) }
	}
	p.Start(cb, zaptest.NewLogger(t))
	return ev, queue, p, &events
}

func TestLostRevocationCallsOnLostOrFallsBackToOnRevoke(t *testing.T) {
	for _, withLost := range []bool{true, false} {
		t.Run(fmt.Sprint("OnLost set ", withLost), func(t *testing.T) {
			ev, queue, p, events := newTest(t, withLost)
			ev.Assign(map[processor.Partition]uint64{part(0): 1, part(1): 2})
			queue <- Batch[int]{P: part(0), Epoch: 1, Recs: []int{10, 11}}
			if r, _, ok, err := p.Poll(context.Background(), time.Second); !ok || err != nil || r != 10 {
				t.Fatalf("Poll = %d, %v, %v; want 10, true, nil", r, ok, err)
			}
			rv := ev.Revoke([]processor.Partition{part(1)}, true)
			// A lost revocation does not take a normal one in.
			if other := ev.Revoke([]processor.Partition{part(0)}, false); other == rv {
				t.Fatal("a normal revocation was merged into a lost one")
			}
			if _, _, ok, err := p.Poll(context.Background(), 10*time.Millisecond); ok || err != nil {
				t.Fatalf("Poll after revoking everything = %v, %v; want no record: the rest of partition 0's batch must be dropped", ok, err)
			}
			first := "lost [t/1]"
			if !withLost {
				first = "revoke [t/1]"
			}
			if want := []string{"assign [t/0 t/1]", first, "revoke [t/0]"}; !slices.Equal(*events, want) {
				t.Errorf("events %q, want %q", *events, want)
			}
			select {
			case <-rv.Done():
			default:
				t.Error("the lost revocation's Done is still open after its callback ran")
			}
			if a := p.Assignment(); len(a) != 0 {
				t.Errorf("Assignment() = %v after everything was revoked", a)
			}
		})
	}
}

func TestRevocationsOfOneKindMerge(t *testing.T) {
	ev := NewEvents()
	a := ev.Revoke([]processor.Partition{part(0)}, false)
	if b := ev.Revoke([]processor.Partition{part(1)}, false); a != b {
		t.Fatal("two revocations the loop had not picked up were not merged")
	}
	if !slices.Equal(a.partitions, []processor.Partition{part(0), part(1)}) {
		t.Errorf("merged revocation holds %v", a.partitions)
	}
}
