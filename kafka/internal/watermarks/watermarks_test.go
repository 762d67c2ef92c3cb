package watermarks

import (
	"context"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/creekstream/creek/processor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	p0 = processor.Partition{Topic: "t", Index: 0}
	p1 = processor.Partition{Topic: "t", Index: 1}
)

type mark struct{ high, committed int64 }

func snapshot(t *Table) map[processor.Partition]mark {
	out := make(map[processor.Partition]mark)
	t.Each(func(p processor.Partition, high, committed int64) { out[p] = mark{high, committed} })
	return out
}

func TestTableKeepsTheHighestWatermarkOfEachClaim(t *testing.T) {
	var tb Table
	var live atomic.Int64
	live.Store(7)
	tb.Claim(p0, 1, 3, nil)
	tb.Claim(p1, 2, -2, live.Load) // sarama's OffsetOldest: no commit
	tb.Observe(processor.Partition{Topic: "other"}, 100)

	// p0's high watermark is not known yet; p1 has the client's own.
	if got, want := snapshot(&tb), map[processor.Partition]mark{p1: {7, -1}}; !maps.Equal(got, want) {
		t.Fatalf("after the claims: %v, want %v", got, want)
	}
	tb.Observe(p0, 10)
	tb.Observe(p0, 8) // an older answer arriving late
	tb.Observe(p1, 9)
	tb.ObserveCommitted(p0, 5)
	tb.ObserveCommitted(p0, 4)
	if got, want := snapshot(&tb), map[processor.Partition]mark{p0: {10, 5}, p1: {9, -1}}; !maps.Equal(got, want) {
		t.Fatalf("after observing: %v, want %v", got, want)
	}
	live.Store(12)
	if got := snapshot(&tb)[p1]; got.high != 12 {
		t.Errorf("p1's high watermark = %d, want the client's 12", got.high)
	}

	// A new claim of p0 starts over; the old claim ending late leaves it be,
	// and a claim older than the tracked one is ignored.
	tb.Claim(p0, 3, 6, nil)
	tb.Release(p0, 1)
	tb.Claim(p0, 2, 0, nil)
	tb.Observe(p0, 11)
	if got, want := snapshot(&tb)[p0], (mark{11, 6}); got != want {
		t.Errorf("p0 after its new claim: %v, want %v", got, want)
	}
	tb.Release(p0, 3)
	tb.Release(p1, 2)
	if got := tb.Partitions(); len(got) != 0 {
		t.Errorf("partitions after every release: %v, want none", got)
	}
}

func TestRefreshListsClaimedPartitionsUntilStopped(t *testing.T) {
	var tb Table
	tb.Claim(p0, 1, -1, nil)
	stop := make(chan struct{})
	called := make(chan []processor.Partition, 1)
	blocked := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tb.Refresh(stop, time.Millisecond, time.Hour, func(ctx context.Context, parts []processor.Partition) {
			tb.Observe(parts[0], 42)
			select {
			case called <- parts:
			default:
			}
			// Once the test waits for it, a call waits for its context, which
			// only stop ends (the timeout is an hour).
			select {
			case blocked <- struct{}{}:
				<-ctx.Done()
			default:
			}
		})
	}()
	select {
	case parts := <-called:
		if len(parts) != 1 || parts[0] != p0 {
			t.Errorf("refresh got %v, want [%v]", parts, p0)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("refresh was not called within 10 s")
	}
	if got := snapshot(&tb)[p0]; got.high != 42 {
		t.Errorf("p0's high watermark = %d, want the refreshed 42", got.high)
	}
	select {
	case <-blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("refresh was not called again within 10 s")
	}
	close(stop)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Refresh did not return within 10 s of stop, or did not end the refresh's context")
	}
}
