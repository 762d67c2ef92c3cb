package segments

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/segments/store"
)

var (
	part0 = processor.Partition{Topic: "spans", Index: 0}
	part1 = processor.Partition{Topic: "spans", Index: 1}
)

func releaseNow(t *testing.T, tr *commitTracker) map[processor.Partition]int64 {
	t.Helper()
	out, _, err := tr.release(time.Hour)
	if err != nil {
		t.Fatalf("release: %v", err)
	}
	return out
}

// Each partition's offsets are released in order, as soon as every payload set of
// its spans is covered, independently of the other partitions; a payload set two
// batches wrote (a redelivery) covers both.
func TestCommitTrackerReleasesInOrderPerPartition(t *testing.T) {
	tr := newCommitTracker()
	now := time.Now()
	b1 := tr.begin(processor.CommittableFromMap(map[processor.Partition]int64{part0: 10, part1: 5}), map[int32]int{0: 2, 1: 1}, now)
	b2 := tr.begin(processor.CommittableOf(part0, 20), map[int32]int{0: 1}, now)
	tr.begin(processor.CommittableOf(part0, 21), nil, now) // a filtered message
	if got := releaseNow(t, tr); len(got) != 0 {
		t.Fatalf("released %v before any payload set was registered", got)
	}
	tr.register(b2, map[int32][]string{0: {"p/x"}})
	tr.register(b1, map[int32][]string{0: {"p/s1", "p/s2"}, 1: {"p/s2"}})
	tr.register(b1, map[int32][]string{0: {"p/never"}}) // a retry registers nothing more

	tr.cover([]string{"p/x"})
	if got := releaseNow(t, tr); len(got) != 0 {
		t.Fatalf("released %v while the first batch waits: offsets must be committed in order", got)
	}
	tr.cover([]string{"p/s2"})
	if got, want := releaseNow(t, tr), map[processor.Partition]int64{part1: 5}; !maps.Equal(got, want) {
		t.Fatalf("released %v, want %v: partition 1's spans are all flushed", got, want)
	}
	if n := tr.pending(); n != 3 {
		t.Fatalf("pending = %d spans, want 3", n)
	}
	tr.cover([]string{"p/s1"})
	if got, want := releaseNow(t, tr), map[processor.Partition]int64{part0: 21}; !maps.Equal(got, want) {
		t.Fatalf("released %v, want %v: both batches and the filtered message", got, want)
	}
	if n := tr.pending(); n != 0 {
		t.Fatalf("pending = %d spans after everything was released, want 0", n)
	}

	// Redelivered spans: the same payload set registered by two batches.
	b3 := tr.begin(processor.CommittableOf(part0, 30), map[int32]int{0: 1}, now)
	b4 := tr.begin(processor.CommittableOf(part0, 31), map[int32]int{0: 1}, now)
	tr.register(b3, map[int32][]string{0: {"p/r"}})
	tr.register(b4, map[int32][]string{0: {"p/r"}})
	tr.cover([]string{"p/r"})
	if got, want := releaseNow(t, tr), map[processor.Partition]int64{part0: 31}; !maps.Equal(got, want) {
		t.Fatalf("released %v, want %v", got, want)
	}
}

// A revoked partition's batches are forgotten and stop counting against the bound;
// a head that waits longer than the limit fails with ErrRedisLost.
func TestCommitTrackerForgetsRevokedAndReportsAStall(t *testing.T) {
	tr := newCommitTracker()
	old := time.Now().Add(-2 * time.Hour)
	b := tr.begin(processor.CommittableOf(part1, 7), map[int32]int{1: 4}, old)
	tr.register(b, map[int32][]string{1: {"p/y"}})
	tr.begin(processor.CommittableOf(part0, 3), map[int32]int{0: 1}, old)
	tr.keep([]int32{0})
	if n := tr.pending(); n != 1 {
		t.Fatalf("pending = %d after partition 1 was revoked, want 1", n)
	}
	if len(tr.waiting) != 0 {
		t.Fatalf("waiting holds %v after its only batch's partition was revoked", tr.waiting)
	}
	// Partition 0's batch began now-ish; pretend it is old.
	tr.parts[part0].entries[0].begun = old
	if _, _, err := tr.release(time.Hour); !errors.Is(err, ErrRedisLost) {
		t.Fatalf("release of a head waiting 2 h with a 1 h limit = %v, want ErrRedisLost", err)
	}
}

// Committing behind the flush: a batch's offset is committed only once its
// segment has been produced and acknowledged. The old mode commits it while the
// produce still waits for its acknowledgement.
func TestFactoryCommitsBehindTheFlush(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode CommitMode
	}{{"after flush", CommitAfterFlush}, {"after ingest", CommitAfterIngest}} {
		t.Run(tc.name, func(t *testing.T) {
			deliveries := make(chan *processor.Delivery, 16)
			prod := newProducer(func(_ int, _ context.Context, d *processor.Delivery) { deliveries <- d })
			c := newChainMode(t, store.Config{RootTimeout: 100 * time.Millisecond, Timeout: 2 * time.Second}, 1, time.Hour, tc.mode, prod)
			x := hexID(1, 32)
			a, b := hexID(0xa, 16), hexID(0xb, 16)
			c.submit(t, 0, time.Now(), x, a, "")
			c.submit(t, 0, time.Now(), x, b, a)
			var pending *processor.Delivery
			waitFor(t, "the segment to be produced", waitLong, func() bool {
				c.poll(t)
				select {
				case pending = <-deliveries:
					return true
				default:
					return false
				}
			})
			// The segment's spans are in Redis and produced, not acknowledged.
			for range 50 {
				c.poll(t)
			}
			if tc.mode == CommitAfterIngest {
				if c.committed[0] != 2 {
					t.Fatalf("committed offset %d of partition 0, want 2 once the spans are in Redis", c.committed[0])
				}
				pending.Resolve(processor.Position{}, nil)
				return
			}
			if c.committed[0] != 0 {
				t.Fatalf("committed offset %d of partition 0 before its segment was acknowledged, want none", c.committed[0])
			}
			pending.Resolve(processor.Position{}, nil)
			c.ingested(t, 0, 2)
		})
	}
}

// Past MaxUncommittedSpans waiting for their flush, the flusher rejects (the
// consumer pauses) rather than drop or grow; once they are released it accepts.
func TestFlusherRejectsAboveMaxUncommittedSpans(t *testing.T) {
	client, _ := flusherRedis(t)
	rec := metricstest.NewRecorder()
	cfg := fastConfig(newProducer(nil))
	cfg.Metrics = rec
	cfg.MaxUncommittedSpans = 2
	r := newRig(t, client, store.Config{}, cfg)
	tr := newCommitTracker()
	r.fl.tracker = tr
	r.start(t, 0)
	msg := processor.NewMessage(1, processor.Committable{}, time.Now())

	tb := tr.begin(processor.CommittableOf(part0, 3), map[int32]int{0: 3}, time.Now())
	tr.register(tb, map[int32][]string{0: {"p/s"}})
	if err := r.fl.Submit(msg); !errors.Is(err, processor.ErrMessageRejected) {
		t.Fatalf("Submit with 3 spans waiting and a bound of 2 = %v, want ErrMessageRejected", err)
	}
	if n := rec.Counter("spans.buffer.flusher.commit_backpressure"); n != 1 {
		t.Fatalf("commit_backpressure = %d, want 1", n)
	}
	tr.cover([]string{"p/s"})
	releaseNow(t, tr)
	if err := r.fl.Submit(msg); err != nil {
		t.Fatalf("Submit once the spans were released = %v, want nil", err)
	}
}
