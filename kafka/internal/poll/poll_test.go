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

// PollRun hands out a batch in runs of at most max records; a batch is given back
// (Done, with its Bytes) once, when it is used up; a pause keeps the rest of a
// batch for the resume.
func TestPollRunHandsOutRunsOfOneBatch(t *testing.T) {
	ev := NewEvents()
	queue := make(chan Batch[int], 8)
	var done []int64
	p := NewPoller(ev, Client[int]{
		Queue: queue, Closing: make(chan struct{}), Closed: fmt.Errorf("closed"),
		Pause: func(map[string][]int32) {}, Resume: func(map[string][]int32) {},
		Done: func(b int64) { done = append(done, b) },
	})
	p.Start(processor.RebalanceCallbacks{}, zaptest.NewLogger(t))
	ev.Assign(map[processor.Partition]uint64{part(0): 1, part(1): 1})
	queue <- Batch[int]{P: part(0), Epoch: 1, Recs: []int{10, 11, 12, 13, 14}, Bytes: 500}
	queue <- Batch[int]{P: part(1), Epoch: 1, Recs: []int{20, 21, 22}, Bytes: 300}
	ctx := context.Background()
	run := func(max int) ([]int, processor.Partition) {
		t.Helper()
		if recs, q, ok := p.ReadyRun(max); ok {
			return slices.Clone(recs), q
		}
		recs, q, err := p.PollRun(ctx, time.Second, max)
		if err != nil {
			t.Fatal(err)
		}
		return slices.Clone(recs), q
	}
	if recs, q := run(2); !slices.Equal(recs, []int{10, 11}) || q != part(0) {
		t.Fatalf("first run %v of %v, want [10 11] of t/0", recs, q)
	}
	if recs, _ := run(2); !slices.Equal(recs, []int{12, 13}) {
		t.Fatalf("second run %v, want [12 13]", recs)
	}
	if recs, _ := run(8); !slices.Equal(recs, []int{14}) {
		t.Fatalf("third run %v, want the batch's last record, [14]", recs)
	}
	if len(done) != 0 {
		t.Fatalf("Done %v before the next poll; the last run's records are still in use", done)
	}
	if recs, q := run(1); !slices.Equal(recs, []int{20}) || q != part(1) {
		t.Fatalf("run %v of %v, want [20] of t/1", recs, q)
	}
	if !slices.Equal(done, []int64{500}) {
		t.Fatalf("Done %v, want [500] once t/0's batch was used up", done)
	}
	p.Pause([]processor.Partition{part(1)})
	if recs, _, err := p.PollRun(ctx, 10*time.Millisecond, 8); err != nil || len(recs) != 0 {
		t.Fatalf("PollRun while t/1 is paused = %v, %v; want nothing", recs, err)
	}
	p.Resume([]processor.Partition{part(1)})
	if recs, _ := run(8); !slices.Equal(recs, []int{21, 22}) {
		t.Fatalf("run after the resume %v, want the rest of the batch, [21 22]", recs)
	}
}
